"""Weights of the DeePSiM fc6 generator: readers (no Caffe, no PyTorch needed) and random init.

Accepted files (`read_generator`):
* `generator.caffemodel` of the Freiburg release (`release_deepsim_v0.zip`, folder `fc6/`), read
  with cv_jax's Caffe reader: blobs `<layer>/weights`, `<layer>/bias`;
* a PyTorch state dict of a port (`upconvGAN_fc6.pt`, `generator_state_dict.pt`): keys
  `defc7.weight` … `deconv0.bias`, optionally prefixed `G.` / `module.`, with `.1.` infixes
  stripped;
* an `.npz` with arrays `<layer>/weights` and `<layer>/bias` (what `save_generator` writes).

The generator weights are for non-commercial research use only (the authors' licence); cv_jax
does not ship or download them.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Mapping

import numpy as np

from cv_jax.models import deepsim
from cv_jax.weights.errors import WeightsError

HOW_TO_GET = ("get generator.caffemodel (fc6) from the DeePSiM release (release_deepsim_v0.zip, "
              "see docs/featvis.md, section DGN-AM) or a PyTorch port's upconvGAN_fc6.pt")


def init_generator(spec=deepsim.FC6, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """Random parameters (PyTorch's default init: U(±1/sqrt(fan_in)), fan_in from dim 1·k·k)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, s in deepsim.param_shapes(spec).items():
    w = s["weights"]
    fan_in = w[1] * (w[2] * w[3] if len(w) == 4 else 1)
    b = 1.0 / np.sqrt(fan_in)
    out[name] = {"weights": rng.uniform(-b, b, w).astype(np.float32),
                 "bias": rng.uniform(-b, b, s["bias"]).astype(np.float32)}
  return out


def _check(params: Mapping, spec, source: str) -> dict:
  shapes = deepsim.param_shapes(spec)
  missing = [f"{n}/{p}" for n in shapes for p in ("weights", "bias")
             if n not in params or p not in params[n]]
  if missing:
    raise WeightsError(f"{source} is not an fc6 generator: missing {', '.join(missing[:4])}"
                       + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
  for n, s in shapes.items():
    for p in ("weights", "bias"):
      got = tuple(np.shape(params[n][p]))
      if got != s[p]:
        raise WeightsError(f"{source}: {n}/{p} has shape {got}, the fc6 generator needs {s[p]}")
  return {n: {p: np.asarray(params[n][p], np.float32) for p in ("weights", "bias")} for n in shapes}


def from_blobs(blobs: Mapping[str, np.ndarray], spec=deepsim.FC6, source: str = "blobs") -> dict:
  """Parameters from `{"<layer>/weights", "<layer>/bias"}` arrays (Caffe reader output)."""
  params: dict = {}
  for k, v in blobs.items():
    if "/" in k:
      layer, part = k.rsplit("/", 1)
      params.setdefault(layer, {})[part] = v
  return _check(params, spec, source)


def from_torch_state_dict(sd: Mapping[str, np.ndarray], spec=deepsim.FC6,
                          source: str = "state dict") -> dict:
  """Parameters from a port's state dict (`<layer>.weight`, `<layer>.bias`)."""
  params: dict = {}
  for k, v in sd.items():
    k = re.sub(r"^(module\.)?(G\.)?", "", k).replace(".1.", ".")
    if "." not in k:
      continue
    layer, part = k.rsplit(".", 1)
    part = {"weight": "weights", "bias": "bias"}.get(part)
    if part:
      params.setdefault(layer, {})[part] = v
  return _check(params, spec, source)


def read_generator(path: str | os.PathLike, spec=deepsim.FC6) -> dict:
  """Generator parameters from a .caffemodel, a PyTorch .pt/.pth or an .npz (see module doc)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise WeightsError(f"generator weights not found at {path}; {HOW_TO_GET}")
  suffix = path.suffix.lower()
  if suffix == ".caffemodel":
    from cv_jax.weights.formats.caffe import read_caffemodel
    return from_blobs(read_caffemodel(path), spec, str(path))
  if suffix in (".pt", ".pth"):
    from cv_jax.weights.formats.torch_pickle import load_state_dict
    return from_torch_state_dict(load_state_dict(path), spec, str(path))
  if suffix == ".npz":
    try:
      with np.load(path) as z:
        blobs = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
      raise WeightsError(f"{path} is not a readable .npz ({e})") from None
    return from_blobs(blobs, spec, str(path))
  raise WeightsError(f"{path}: unknown generator file type {suffix!r}; use .caffemodel, .pt/.pth "
                     "or .npz")


def save_generator(path: str | os.PathLike, params: Mapping) -> pathlib.Path:
  """Write parameters as an .npz of `<layer>/weights`, `<layer>/bias` (fast to reload)."""
  path = pathlib.Path(path)
  np.savez(path, **{f"{n}/{p}": np.asarray(v[p]) for n, v in params.items()
                    for p in ("weights", "bias")})
  return path


def load_generator(path: str | os.PathLike | None = None, spec=deepsim.FC6, *,
                   random_init: int | None = None) -> deepsim.Generator:
  """A `deepsim.Generator` from a weights file, or with random weights (`random_init=SEED`)."""
  if random_init is not None:
    return deepsim.Generator(init_generator(spec, random_init), spec)
  if not path:
    raise WeightsError(f"DGN-AM needs the generator weights (config.generator=PATH); {HOW_TO_GET}")
  return deepsim.Generator(read_generator(path, spec), spec)
