"""Random crops and noise of the MACO and feature-accentuation recipes, as pure functions of
explicit keys and static shapes (vmappable over images and units).

* `crop_and_resize`: TF's `tf.image.crop_and_resize` (bilinear, extrapolation value 0) for one
  image and a batch of normalised boxes (y1, x1, y2, x2). Sample i of a box covering [y1, y2]
  lies at y1·(H−1) + i·(y2−y1)·(H−1)/(h_out−1) (the box centre when h_out = 1); samples outside
  [0, H−1] get 0, the others interpolate the two neighbours (top = floor, bottom = ceil).
* `maco_boxes`: Xplique's MACO crops: centres N(0.5, 0.15), square side N(size, 0.05) clipped
  to [0.05, 1], where `size` is the step's average box size (Xplique: linear 0.5 → 0.05).
* `accent_boxes`: faccent's `standard_box_transforms` crops: side uniform in [lo, hi], top-left
  corner uniform so that the box stays inside the canvas.
* `add_noise`: normal noise of std s plus uniform noise in ±s/2 (both libraries).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def crop_and_resize(image: jax.Array, boxes: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Crops (N, h, w, C) of one (H, W, C) image at normalised boxes (N, 4) = (y1, x1, y2, x2)."""
  H, W = image.shape[:2]
  h, w = size

  def coords(lo, hi, n_in, n_out):
    if n_out > 1:
      i = jnp.arange(n_out, dtype=jnp.float32)
      return lo[:, None] * (n_in - 1) + i[None, :] * ((hi - lo) * (n_in - 1) / (n_out - 1))[:, None]
    return (0.5 * (lo + hi) * (n_in - 1))[:, None]

  ys = coords(boxes[:, 0], boxes[:, 2], H, h)  # (N, h)
  xs = coords(boxes[:, 1], boxes[:, 3], W, w)  # (N, w)
  y_ok = (ys >= 0) & (ys <= H - 1)
  x_ok = (xs >= 0) & (xs <= W - 1)
  y0 = jnp.clip(jnp.floor(ys), 0, H - 1).astype(jnp.int32)
  y1 = jnp.clip(jnp.ceil(ys), 0, H - 1).astype(jnp.int32)
  x0 = jnp.clip(jnp.floor(xs), 0, W - 1).astype(jnp.int32)
  x1 = jnp.clip(jnp.ceil(xs), 0, W - 1).astype(jnp.int32)
  fy = (ys - jnp.floor(ys))[:, :, None, None]
  fx = (xs - jnp.floor(xs))[:, None, :, None]

  def g(yi, xi):
    return image[yi[:, :, None], xi[:, None, :]]  # (N, h, w, C)

  top = g(y0, x0) * (1 - fx) + g(y0, x1) * fx
  bottom = g(y1, x0) * (1 - fx) + g(y1, x1) * fx
  out = top * (1 - fy) + bottom * fy
  ok = (y_ok[:, :, None] & x_ok[:, None, :])[..., None]
  return jnp.where(ok, out, 0.0).astype(image.dtype)


def maco_boxes(key: jax.Array, n: int, size: jax.Array | float, centre_std: float = 0.15,
               size_std: float = 0.05, min_size: float = 0.05) -> jax.Array:
  """n square boxes (y1, x1, y2, x2): centres N(0.5, centre_std), side N(size, size_std) in
  [min_size, 1] (Xplique `maco_optimisation_step`)."""
  kc, ks = jax.random.split(key)
  c = 0.5 + centre_std * jax.random.normal(kc, (n, 2))
  d = jnp.clip(size + size_std * jax.random.normal(ks, (n,)), min_size, 1.0)
  return jnp.stack([c[:, 0] - d / 2, c[:, 1] - d / 2, c[:, 0] + d / 2, c[:, 1] + d / 2], -1)


def accent_boxes(key: jax.Array, n: int, min_size: float = 0.05,
                 max_size: float = 0.99) -> jax.Array:
  """n square boxes: side U[min_size, max_size], top-left U[0, 1 − side] (faccent `box_crop_2`)."""
  ks, ky, kx = jax.random.split(key, 3)
  d = min_size + (max_size - min_size) * jax.random.uniform(ks, (n,))
  y = jax.random.uniform(ky, (n,)) * (1 - d)
  x = jax.random.uniform(kx, (n,)) * (1 - d)
  return jnp.stack([y, x, y + d, x + d], -1)


def add_noise(key: jax.Array, x: jax.Array, std: jax.Array | float) -> jax.Array:
  """x + N(0, std²) + U(−std/2, std/2), elementwise."""
  kn, ku = jax.random.split(key)
  return (x + std * jax.random.normal(kn, x.shape, x.dtype)
          + std * (jax.random.uniform(ku, x.shape, x.dtype) - 0.5))
