"""The one PNG writer (and reader) of cv_jax: float RGB in [0, 1] <-> uint8 PNG files.

Rounding rule, for every image cv_jax writes: uint8 = round(clip(x, 0, 1) * 255), ties to even
(what `cv2.imwrite` does with the paper's occlusion queries, `img * 255`). The paper's own
feature-visualization files truncated instead (`uint8(clip(x * 255))`, docs/featvis.md); the two
rules differ by at most 1/255 per channel.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np


def to_uint8(image) -> np.ndarray:
  """[0, 1] float image -> uint8 with the rounding rule above (NaN -> 0)."""
  x = np.nan_to_num(np.asarray(image, np.float64), nan=0.0)
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, image) -> pathlib.Path:
  """Write an (H, W, 3) float image in [0, 1] (or an already uint8 one, as it is) as a PNG,
  atomically (temp file + rename); creates the parent folder. Returns the path."""
  from PIL import Image
  arr = np.asarray(image)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp.png")
  Image.fromarray(arr if arr.dtype == np.uint8 else to_uint8(arr)).save(tmp)
  os.replace(tmp, path)
  return path


def load_png(path: str | os.PathLike) -> np.ndarray:
  """Read a PNG as (H, W, 3) float32 in [0, 1] (uint8 / 255)."""
  from PIL import Image
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"), np.float32) / 255.0
