"""Finding a model's weights: an explicit path, the cache `$CV_JAX_HOME`, or a checked download."""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.request
from typing import Any, Mapping

from cv_jax.weights.errors import WeightsError

# Official files of the models that `cv_jax.assets` does not catalogue (googlenet_bvlc is there).
# `sha1`/`sha256`: digests published with the file; `size`: its byte count.
OFFICIAL = {
    "inceptionv1": {
        "url": "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
        "filename": "inception5h.pth",
        "size": 28_283_262,  # no digest is published for this file
    },
}

# Names looked for in $CV_JAX_HOME/<model>/, in order.
LOCAL_NAMES = ("checkpoint", "bvlc_googlenet_blobs.npz", "bvlc_googlenet.caffemodel",
               "inception5h.pth", "tensorflow_inception_graph.pb", "InceptionV1.pb")


def cache_dir() -> pathlib.Path:
  """`$CV_JAX_HOME`, default `~/.cache/cv_jax`."""
  return pathlib.Path(os.environ.get("CV_JAX_HOME", "~/.cache/cv_jax")).expanduser()


def resolve(name: str, weights: str | os.PathLike | None = None, download: bool = True) -> pathlib.Path:
  """Find the weights file for model `name`: explicit path, shared folder, cache, download.

  The shared folder and the checked download of the BVLC weights are `cv_jax.assets`'.
  """
  from cv_jax import assets
  if weights is not None:
    p = pathlib.Path(weights).expanduser()
    if not p.exists():
      raise WeightsError(f"weights file not found: {p}")
    return p
  if name in assets.ASSETS:
    try:
      return assets.locate(name, download=download)
    except assets.AssetError as e:
      raise WeightsError(str(e)) from None
  local = cache_dir() / name
  for fname in LOCAL_NAMES:
    if (local / fname).exists():
      return local / fname
  how = (f"pass weights=PATH (CLI: --weights=PATH) with a file you have, or put one of "
         f"{', '.join(LOCAL_NAMES)} into {local}")
  if not download or name not in OFFICIAL:
    raise WeightsError(f"no weights for {name!r} found. {how}")
  info = OFFICIAL[name]
  target = local / info["filename"]
  try:
    _download(info, target)
  except Exception as e:
    raise WeightsError(f"could not download {info['url']} ({type(e).__name__}: {e}). {how}") from e
  return target


def _download(info: Mapping[str, Any], target: pathlib.Path) -> None:
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.with_suffix(target.suffix + ".part")
  digests = {k: hashlib.new(k) for k in ("sha1", "sha256") if k in info}
  size = 0
  try:
    with urllib.request.urlopen(info["url"], timeout=60) as r, open(tmp, "wb") as f:
      while chunk := r.read(1 << 20):
        f.write(chunk)
        size += len(chunk)
        for h in digests.values():
          h.update(chunk)
  except BaseException:
    tmp.unlink(missing_ok=True)  # no partial download left behind
    raise
  for algo, h in digests.items():
    if h.hexdigest() != info[algo]:
      tmp.unlink(missing_ok=True)
      raise WeightsError(f"{algo} mismatch for {info['url']}: got {h.hexdigest()}")
  if "size" in info and size != info["size"]:
    tmp.unlink(missing_ok=True)
    raise WeightsError(f"size mismatch for {info['url']}: got {size} bytes, expected {info['size']}")
  tmp.rename(target)
