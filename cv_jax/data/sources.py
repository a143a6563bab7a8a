"""Image sources for dataset sweeps: a folder of images, or a TFDS dataset (optional extra).

A *source* is an indexable list of images with stable ids: image `i` has the name `paths[i]`
and `load(i)` returns it preprocessed (the paper's: shorter side 256 PIL-bilinear, centre crop
224, RGB float32 in [0, 1]). Ids are fixed by the source alone (sorted relative paths for a
folder, record order for TFDS), so every sweep over the same source numbers its images the
same way, whatever the batch size or parallelism.

    src = open_source("folder:/data/imagenet/train")      # recursive, class folders or flat
    src = open_source("tfds:imagenet2012:train")           # needs `pip install cv_jax[tfds]`

`load` raises on unreadable or corrupt files; `BatchLoader` catches that, counts the image as
failed and goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pathlib
from typing import Iterator, Protocol, Sequence

import numpy as np
from PIL import Image

from cv_jax.data.preprocess import preprocess_pil

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class Source(Protocol):
  """What a sweep needs from an image source."""

  uri: str
  paths: list[str]
  resize: int
  crop: int

  def __len__(self) -> int: ...

  def load(self, index: int) -> np.ndarray:
    """Image `index` preprocessed to (crop, crop, 3) float32 in [0, 1]; raises if unreadable."""
    ...


class FolderSource:
  """All image files under a folder (recursive), sorted by relative path.

  Works for ImageNet-style class folders (`train/n01440764/x.JPEG`) and for flat folders.
  Files are recognised by extension (case-insensitive; `IMAGE_EXTENSIONS` by default).
  Hidden files and folders (starting with ".") are skipped.
  """

  def __init__(self, root: str | os.PathLike, *, resize: int = 256, crop: int = 224,
               extensions: Sequence[str] = IMAGE_EXTENSIONS):
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
      raise ValueError(f"image folder {str(root)!r} does not exist or is not a directory")
    exts = tuple(e.lower() for e in extensions)
    rel = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
      dirnames[:] = [d for d in dirnames if not d.startswith(".")]
      for f in filenames:
        if not f.startswith(".") and f.lower().endswith(exts):
          rel.append(os.path.relpath(os.path.join(dirpath, f), root))
    rel.sort()
    if not rel:
      raise ValueError(f"no image files ({', '.join(exts)}) found under {str(root)!r}")
    self.root = str(root.resolve())
    self.uri = f"folder:{self.root}"
    self.paths = [os.path.join(self.root, r) for r in rel]
    self.resize, self.crop = resize, crop

  def __len__(self) -> int:
    return len(self.paths)

  def load(self, index: int) -> np.ndarray:
    """Image `index` with the paper's preprocessing; OSError/ValueError if unreadable."""
    with Image.open(self.paths[index]) as im:
      im.load()
      return preprocess_pil(im, self.resize, self.crop)

  def __repr__(self) -> str:
    return f"FolderSource({self.root!r}, {len(self)} images)"


class TFDSSource:
  """A TFDS dataset split with random access (`builder.as_data_source`, array_record format).

  Needs the optional extra `tensorflow-datasets` and a dataset the user has prepared
  (`tfds.builder(name).download_and_prepare()`; ImageNet needs its manual download). Image `i`
  is record `i` of the split; its name is the record's `file_name` feature when present, else
  `tfds:<name>:<split>#<i>`.
  """

  def __init__(self, name: str, split: str = "train", *, data_dir: str | None = None,
               resize: int = 256, crop: int = 224, image_key: str = "image"):
    try:
      import tensorflow_datasets as tfds
    except ImportError as e:
      raise ImportError(
          "TFDS sources need tensorflow-datasets, which the default install leaves out; "
          "install it with `pip install 'cv_jax[tfds]'` (or `pip install tensorflow-datasets`)"
      ) from e
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own DatasetNotFoundError
      raise ValueError(f"unknown TFDS dataset {name!r}: {e}") from e
    try:
      self._data = builder.as_data_source(split=split)
    except Exception as e:
      raise ValueError(f"cannot open split {split!r} of TFDS dataset {name!r} (prepared with "
                       f"download_and_prepare()?): {e}") from e
    self.name, self.split, self.image_key = name, split, image_key
    self.uri = f"tfds:{name}:{split}"
    self.resize, self.crop = resize, crop
    n = len(self._data)
    self.paths = [f"{self.uri}#{i}" for i in range(n)]

  def __len__(self) -> int:
    return len(self.paths)

  def load(self, index: int) -> np.ndarray:
    """Record `index`'s image with the paper's preprocessing."""
    record = self._data[index]
    if self.image_key not in record:
      raise ValueError(f"record {index} of {self.uri} has no {self.image_key!r} feature "
                       f"(features: {sorted(record)})")
    image = np.asarray(record[self.image_key])
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    return preprocess_pil(Image.fromarray(image.astype(np.uint8)), self.resize, self.crop)

  def __repr__(self) -> str:
    return f"TFDSSource({self.uri!r}, {len(self)} images)"


class SubsetSource:
  """The images `indices` of another source, renumbered 0..len-1 (ids follow `indices`)."""

  def __init__(self, base: Source, indices: Sequence[int], tag: str = ""):
    self.base = base
    self.indices = [int(i) for i in indices]
    self.paths = [base.paths[i] for i in self.indices]
    self.uri = base.uri + (f"[{tag}]" if tag else "[subset]")
    self.resize, self.crop = base.resize, base.crop

  def __len__(self) -> int:
    return len(self.indices)

  def load(self, index: int) -> np.ndarray:
    """Image `index` of the subset."""
    return self.base.load(self.indices[index])


def open_source(uri: str | os.PathLike, *, resize: int = 256, crop: int = 224,
                max_images: int | None = None, subset_seed: int | None = None) -> Source:
  """Open an image source from a URI: `folder:/path`, `tfds:name[:split]`, `asset:NAME`, a path.

  `asset:imagenet_samples` is the demo's 1000 sample photos, found or downloaded by
  `cv_jax.assets.locate` (shared folder, `$CV_JAX_HOME`, then a checked download).

  `max_images`: keep only that many images: the first ones, or (with `subset_seed`) a random
  subset drawn with `np.random.default_rng(subset_seed)`, kept in source order.
  """
  if not isinstance(uri, str):
    uri = os.fspath(uri)
  if uri.startswith("folder:"):
    src: Source = FolderSource(uri[len("folder:"):], resize=resize, crop=crop)
  elif uri.startswith("asset:"):
    from cv_jax import assets
    src = FolderSource(assets.locate(uri[len("asset:"):]), resize=resize, crop=crop)
  elif uri.startswith("tfds:"):
    parts = uri[len("tfds:"):].split(":")
    if not parts[0] or len(parts) > 2:
      raise ValueError(f"bad TFDS source {uri!r}; expected tfds:NAME or tfds:NAME:SPLIT")
    src = TFDSSource(parts[0], parts[1] if len(parts) == 2 and parts[1] else "train",
                     resize=resize, crop=crop)
  elif ":" in uri.split(os.sep)[0] and not os.path.exists(uri):
    raise ValueError(f"unknown source scheme in {uri!r}; use folder:/path, tfds:name:split or "
                     "asset:imagenet_samples")
  else:
    src = FolderSource(uri, resize=resize, crop=crop)
  if max_images is not None:
    if max_images <= 0:
      raise ValueError(f"max_images must be positive, got {max_images}")
    if max_images < len(src):
      if subset_seed is None:
        idx = np.arange(max_images)
        tag = f":{max_images}"
      else:
        idx = np.sort(np.random.default_rng(subset_seed).choice(len(src), max_images, replace=False))
        tag = f"random {max_images} seed {subset_seed}"
      src = SubsetSource(src, idx, tag)
  return src


class BatchLoader:
  """Decode a source's images in parallel threads, in fixed batches, in id order.

  PIL releases the GIL while decoding and resizing, so threads scale with cores. Up to
  `prefetch` batches are decoded ahead of the one being consumed. Iterating from `start` yields
  `(start_id, images (batch, crop, crop, 3) float32, valid (batch,) bool, failures)` where rows
  past the end of the source and unreadable images are zeros with valid False, and failures
  lists `(id, reason)` of the unreadable ones.
  """

  def __init__(self, source: Source, batch_size: int, *, workers: int = 8, prefetch: int = 2,
               rows: tuple[int, int] | None = None):
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.source, self.batch_size = source, batch_size
    self.workers, self.prefetch = max(1, workers), max(1, prefetch)
    # rows: the slice of each global batch this process decodes (multi-host); default all.
    self.rows = rows or (0, batch_size)

  def _load(self, i: int):
    try:
      img = self.source.load(i)
      shape = (self.source.crop, self.source.crop, 3)
      if self.source.crop and img.shape != shape:
        raise ValueError(f"image has shape {img.shape}, expected {shape}")
      return img, None
    except Exception as e:  # corrupt/unreadable files of any kind are skipped, not fatal
      return None, f"{type(e).__name__}: {e}"

  def __call__(self, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray, list]]:
    n = len(self.source)
    lo, hi = self.rows
    with cf.ThreadPoolExecutor(self.workers, thread_name_prefix="cv_jax-decode") as pool:
      pending = []

      def submit(s):
        ids = [s + r for r in range(lo, hi)]
        pending.append((s, ids, [pool.submit(self._load, i) if i < n else None for i in ids]))

      next_start = start
      while next_start < n and len(pending) < self.prefetch:
        submit(next_start)
        next_start += self.batch_size
      while pending:
        s, ids, futs = pending.pop(0)
        if next_start < n:
          submit(next_start)
          next_start += self.batch_size
        shape = (len(ids), self.source.crop, self.source.crop, 3)
        images = np.zeros(shape, np.float32)
        valid = np.zeros(len(ids), bool)
        failures = []
        for r, (i, fut) in enumerate(zip(ids, futs)):
          if fut is None:
            continue
          img, err = fut.result()
          if err is None:
            images[r] = img
            valid[r] = True
          else:
            failures.append((i, err))
        yield s, images, valid, failures
