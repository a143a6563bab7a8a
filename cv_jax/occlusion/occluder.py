"""The occluder: its size, its grid of positions over the image, and what it fills the square with.

Starts are 0, stride, 2*stride, ... while start + size <= H; the occluded region is rows
[r, r+size) x cols [c, c+size). Fill "mean" sets every channel of the square to that channel's
mean over the covered pixels of the un-occluded image (the paper's rule); also "blur", a constant
colour, or any (H, W, 3) array to copy the region from.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cv_jax.occlusion.blur import gaussian_blur

Fill = Any  # "mean" | "blur" | float | (r, g, b) | (H, W, 3) array

# The paper's occluders for 224 px images (CU `occlusion_utils.py`: hard-coded lists, not a
# rounding rule): percent of the side -> pixels. Grids at stride 2: 80, 68, 57 per axis.
PAPER_OCCLUDER_SIZES = {30: 66, 40: 90, 50: 112}


def occluder_size(size: int | float, shape: Sequence[int]) -> int:
  """Occluder side in pixels: an int is pixels, a float in (0, 1] a fraction of the shorter side.

  The fraction is rounded: the paper's 40 % of 224 px is round(89.6) = 90 px and 50 % is 112 px,
  but its "30 %" is a hard-coded 66 px (round gives 67): pass pixels, or see
  `PAPER_OCCLUDER_SIZES`, to reproduce it.
  """
  h, w = int(shape[0]), int(shape[1])
  if isinstance(size, (bool, np.bool_)):
    raise ValueError(f"occluder size must be pixels (int) or a fraction (float), got {size!r}")
  if isinstance(size, (float, np.floating)):
    if not 0.0 < size <= 1.0:
      raise ValueError(f"fractional occluder size must be in (0, 1], got {size}")
    px = int(round(size * min(h, w)))
  else:
    px = int(size)
  if not 1 <= px <= min(h, w):
    raise ValueError(f"occluder size {px} px does not fit the {h}x{w} image")
  return px


def occluder_starts(length: int, size: int, stride: int) -> np.ndarray:
  """Start offsets 0, stride, ... with start + size <= length (the paper's grid along one axis)."""
  if stride < 1:
    raise ValueError(f"stride must be >= 1, got {stride}")
  if not 1 <= size <= length:
    raise ValueError(f"occluder size {size} does not fit an axis of length {length}")
  return np.arange(0, length - size + 1, stride, dtype=np.int32)


def patch_means(image: np.ndarray, size: int, row_starts: Sequence[int],
                col_starts: Sequence[int]) -> np.ndarray:
  """Per-channel mean of every size x size patch, (rows, cols, C), from one integral image.

  Computed in float64 (exact to float32 rounding), all positions at once.
  """
  img = np.asarray(image, np.float64)
  s = np.zeros((img.shape[0] + 1, img.shape[1] + 1, img.shape[2]))
  s[1:, 1:] = img.cumsum(0).cumsum(1)
  r = np.asarray(row_starts)[:, None]
  c = np.asarray(col_starts)[None, :]
  tot = s[r + size, c + size] - s[r, c + size] - s[r + size, c] + s[r, c]
  return (tot / (size * size)).astype(np.float32)


def check_image(image) -> np.ndarray:
  """The query image as float32 (H, W, 3) (a leading batch of one is dropped), or a ValueError."""
  img = np.asarray(image, dtype=np.float32)
  if img.ndim == 4 and img.shape[0] == 1:
    img = img[0]
  if img.ndim != 3 or img.shape[-1] != 3:
    raise ValueError(f"image must be (H, W, 3) RGB, got shape {img.shape}")
  if not np.isfinite(img).all():
    raise ValueError("image contains NaN or inf")
  return img


def _fill_value(image, row: int, col: int, size: int, fill: Fill, xp):
  if isinstance(fill, str):
    if fill == "mean":
      return image[row:row + size, col:col + size].mean(axis=(0, 1))
    if fill == "blur":
      return gaussian_blur(image)[row:row + size, col:col + size]
    raise ValueError(f"unknown fill {fill!r}; use 'mean', 'blur', a colour or an image array")
  f = xp.asarray(fill, dtype=xp.float32)
  if f.ndim == 3:
    if f.shape != image.shape:
      raise ValueError(f"fill image shape {f.shape} != image shape {image.shape}")
    return f[row:row + size, col:col + size]
  if f.ndim > 1 or (f.ndim == 1 and f.shape[0] not in (1, image.shape[-1])):
    raise ValueError(f"fill colour must be a scalar or one value per channel, got {f.shape}")
  return f


def occlude(image, row: int, col: int, size: int, fill: Fill = "mean"):
  """Copy of `image` (H, W, C) with rows [row, row+size) x cols [col, col+size) replaced.

  `fill`: "mean" (per-channel mean of the covered pixels, the paper's rule), "blur" (those pixels
  of `gaussian_blur(image)`), a constant (scalar or per-channel), or an (H, W, C) array whose
  pixels are copied in. NumPy in -> NumPy out; JAX in -> JAX out.
  """
  is_jax = isinstance(image, jax.Array)
  xp = jnp if is_jax else np
  image = xp.asarray(image, dtype=xp.float32)
  if image.ndim != 3:
    raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
  h, w = image.shape[:2]
  row, col, size = int(row), int(col), int(size)
  if size < 1 or row < 0 or col < 0 or row + size > h or col + size > w:
    raise ValueError(f"occluder {size}px at ({row}, {col}) does not fit the {h}x{w} image")
  value = _fill_value(image, row, col, size, fill, xp)
  if is_jax:
    patch = jnp.broadcast_to(value, (size, size, image.shape[2]))
    return image.at[row:row + size, col:col + size].set(patch)
  out = image.copy()
  out[row:row + size, col:col + size] = value
  return out


def fill_arrays(img: np.ndarray, fill: Fill, size: int, rs: np.ndarray, cs: np.ndarray):
  """(fill kind, per-position colours (P, 3), fill image (H, W, 3)) for the program."""
  n = len(rs) * len(cs)
  if isinstance(fill, str):
    if fill == "mean":
      return "colour", patch_means(img, size, rs, cs).reshape(n, 3), img
    if fill == "blur":
      return "image", np.zeros((n, 3), np.float32), np.asarray(gaussian_blur(img))
    raise ValueError(f"unknown fill {fill!r}; use 'mean', 'blur', a colour or an image array")
  f = np.asarray(fill, np.float32)
  if f.ndim == 3:
    if f.shape != img.shape:
      raise ValueError(f"fill image shape {f.shape} != image shape {img.shape}")
    return "image", np.zeros((n, 3), np.float32), f
  if f.size not in (1, 3):
    raise ValueError(f"fill colour must be a scalar or an RGB triple, got shape {f.shape}")
  return "colour", np.broadcast_to(f.reshape(-1), (n, 3)).astype(np.float32), img
