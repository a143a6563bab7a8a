"""The public files the demo needs, with the sizes and digests they were recorded with.

* `googlenet_bvlc`: the BVLC model zoo's `bvlc_googlenet.caffemodel` (one file; licence:
  unrestricted, per the model zoo readme; SHA-1 from that readme).
* `imagenet_samples`: 1000 ImageNet photos, one per class, from the public GitHub repository
  EliSchwartz/imagenet-sample-images at a pinned commit (names, sizes and SHA-256 in
  `imagenet_samples.tsv` beside this file). ImageNet's terms: non-commercial research and
  education only.

Each asset also names where the project's `shared/` folder keeps it (`shared`, relative to that
folder) and its folder under `$CV_JAX_HOME` (`home`). See docs/assets.md.
"""

from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass

from cv_jax.assets.download import RemoteFile

SAMPLES_REPO = "EliSchwartz/imagenet-sample-images"
SAMPLES_COMMIT = "bc69043e2862758a1906c6a24a792bb28c6bb2ff"
SAMPLES_MANIFEST = pathlib.Path(__file__).with_name("imagenet_samples.tsv")


@dataclass(frozen=True)
class Asset:
  """A named set of public files: a single file (`kind="file"`) or a folder of files."""

  name: str
  kind: str               # "file" or "folder"
  home: str               # folder under $CV_JAX_HOME
  shared: tuple[str, ...]  # candidates relative to the shared folder, first found wins
  what: str               # a few words for messages
  licence: str
  also: tuple[str, ...] = ()  # other names accepted in the cache folder (first found wins)

  @property
  def files(self) -> tuple[RemoteFile, ...]:
    """The public files (relative names are `RemoteFile.mirror_path` minus `home/`)."""
    return _files(self.name)


ASSETS = {
    "googlenet_bvlc": Asset(
        name="googlenet_bvlc", kind="file", home="googlenet_bvlc",
        shared=("models/bvlc_googlenet/bvlc_googlenet_blobs.npz",
                "models/bvlc_googlenet/bvlc_googlenet.caffemodel"),
        what="BVLC GoogLeNet weights", licence="unrestricted (BVLC model zoo)",
        also=("checkpoint", "bvlc_googlenet_blobs.npz")),
    "imagenet_samples": Asset(
        name="imagenet_samples", kind="folder", home="imagenet_samples",
        shared=("data/imagenet_samples",),
        what="ImageNet sample images (1000, one per class)",
        licence="ImageNet terms: non-commercial research and education"),
}


@functools.cache
def _files(name: str) -> tuple[RemoteFile, ...]:
  if name == "googlenet_bvlc":
    return (RemoteFile(
        url="http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        size=53_533_754, digest="sha1:405fc5acd08a3bb12de8ee5e23a96bec22f08204",
        mirror_path="googlenet_bvlc/bvlc_googlenet.caffemodel"),)
  if name == "imagenet_samples":
    base = f"https://raw.githubusercontent.com/{SAMPLES_REPO}/{SAMPLES_COMMIT}"
    out = []
    for line in SAMPLES_MANIFEST.read_text().splitlines():
      if not line or line.startswith("#"):
        continue
      fname, size, sha256 = line.split("\t")
      out.append(RemoteFile(url=f"{base}/{fname}", size=int(size), digest=f"sha256:{sha256}",
                            mirror_path=f"imagenet_samples/{fname}"))
    return tuple(out)
  raise KeyError(name)


def get(name: str) -> Asset:
  """The asset `name`; ValueError naming the known ones otherwise."""
  if name not in ASSETS:
    raise ValueError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
  return ASSETS[name]
