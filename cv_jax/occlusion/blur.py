"""Gaussian blur as OpenCV's `GaussianBlur` computes it (BORDER_REFLECT_101), in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel(ksize: int = 21, sigma: float = 3.5) -> np.ndarray:
  """OpenCV's `getGaussianKernel(ksize, sigma)`: exp(-(i - (k-1)/2)^2 / (2 sigma^2)), sum 1.

  `sigma <= 0` uses OpenCV's rule sigma = 0.3 * ((ksize - 1) / 2 - 1) + 0.8 (3.5 for ksize 21,
  the paper's `cv2.GaussianBlur(img, (21, 21), 0)`).
  """
  if ksize < 1 or ksize % 2 == 0:
    raise ValueError(f"ksize must be a positive odd integer, got {ksize}")
  if sigma <= 0:
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
  x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
  k = np.exp(-(x * x) / (2 * sigma * sigma))
  return k / k.sum()


def gaussian_blur(image, ksize: int = 21, sigma: float = 3.5) -> jax.Array:
  """Separable Gaussian blur of an (H, W, C) image with reflect-101 borders (OpenCV's default).

  Rows first, then columns, float32 accumulation of a float64-derived kernel.
  """
  image = jnp.asarray(image, jnp.float32)
  if image.ndim != 3:
    raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
  r = ksize // 2
  if min(image.shape[:2]) <= r:
    raise ValueError(f"image {image.shape[:2]} too small for a {ksize}-tap blur with reflect-101")
  k = jnp.asarray(gaussian_kernel(ksize, sigma), jnp.float32)
  x = jnp.pad(image, ((r, r), (0, 0), (0, 0)), mode="reflect")  # numpy 'reflect' = reflect-101
  h = image.shape[0]
  x = sum(k[i] * x[i:i + h] for i in range(ksize))
  x = jnp.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect")
  w = image.shape[1]
  return sum(k[i] * x[:, i:i + w] for i in range(ksize))
