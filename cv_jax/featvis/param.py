"""Image parameterisations: pixel, FFT (Lucid/Lucent), colour decorrelation, valid-range maps.

All functions are pure. A parameterisation is a pair (`init(key) -> params`, `to_image(params)
-> (B, H, W, 3)` in [0, 1]); `image_param` builds one from options. Formulas follow
Lucid's and Lucent's image parameterisations (Lucid `param/spatial.py`, `param/color.py`,
Lucent `param/spatial.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Lucid's square root of the ImageNet colour correlation matrix, and its normalised form.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
MAX_NORM_SVD_SQRT = np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
COLOR_CORRELATION_NORMALIZED = (COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT).astype(np.float32)
COLOR_MEAN = np.asarray([0.48, 0.46, 0.41], np.float32)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
  """Spatial frequency magnitude of each rfft2 bin, shape (h, w//2+1) (+1 column for odd w).

  For odd w Lucid keeps one extra frequency column and crops a pixel after the inverse FFT.
  """
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 else 1)]
  return np.sqrt(fx * fx + fy * fy)


def fft_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  """Per-bin spectrum scale 1 / max(|f|, 1/max(h, w)) ** decay_power (float32)."""
  freqs = rfft2d_freqs(h, w)
  return (1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power).astype(np.float32)


def fft_init(key: jax.Array, batch: int, h: int, w: int, channels: int = 3,
             sd: float = 0.01) -> jax.Array:
  """Initial spectrum (batch, channels, h, wf, 2) (real, imaginary) ~ N(0, sd^2)."""
  wf = rfft2d_freqs(h, w).shape[1]
  return sd * jax.random.normal(key, (batch, channels, h, wf, 2), jnp.float32)


def fft_to_image(spectrum: jax.Array, h: int, w: int, decay_power: float = 1.0,
                 flavor: str = "lucid") -> jax.Array:
  """Spectrum (B, C, h, wf, 2) -> NHWC image (B, h, w, C) before colour mapping.

  `image = irfft2(scale * spectrum) / 4` with the orthonormal inverse FFT. Even widths give the
  same result in both flavours. For odd widths, "lucid" uses TF's irfft2d with fft_length w+1
  (normalised by h(w+1), scaled by sqrt(h w)) and crops a column; "lucent" passes s=(h, w),
  which ignores the extra frequency column.
  """
  if flavor not in ("lucid", "lucent"):
    raise ValueError(f"unknown FFT flavor {flavor!r}; choose 'lucid' or 'lucent'")
  scale = jnp.asarray(fft_scale(h, w, decay_power))
  c = (spectrum[..., 0] + 1j * spectrum[..., 1]) * scale
  if w % 2 == 0 or flavor == "lucent":
    img = jnp.fft.irfftn(c, s=(h, w), axes=(-2, -1), norm="ortho")
  else:
    wl = w + 1
    img = jnp.fft.irfftn(c * np.sqrt(h * w), s=(h, wl), axes=(-2, -1), norm="backward")[..., :w]
  img = img[..., :h, :w] / 4.0
  return jnp.transpose(img, (0, 2, 3, 1)).astype(jnp.float32)


def pixel_init(key: jax.Array, batch: int, h: int, w: int, channels: int = 3,
               sd: float = 0.01) -> jax.Array:
  """Pixel parameterisation: NHWC N(0, sd^2)."""
  return sd * jax.random.normal(key, (batch, h, w, channels), jnp.float32)


def decorrelate_color(t: jax.Array) -> jax.Array:
  """Lucid's `_linear_decorrelate_color`: rgb_i = sum_j C_n[i, j] t_j (channels last).

  Written out as three multiply-adds per pixel: as a (pixels x 3) @ (3 x 3) product, or as a
  3-term reduction, XLA CPU hands it to its library path, which costs far more at this shape.
  """
  c = COLOR_CORRELATION_NORMALIZED
  return jnp.stack([t[..., 0] * c[i, 0] + t[..., 1] * c[i, 1] + t[..., 2] * c[i, 2]
                    for i in range(3)], axis=-1)


@jax.custom_vjp
def constrain_l_inf(x: jax.Array) -> jax.Array:
  """Lucid's `constrain_L_inf`: x / max(1, |x|), with Lucid's projected straight-through gradient.

  Backward: the cotangent g (of the loss being minimised) passes unchanged, except where
  |x| >= 1 and x * g > 0, where it is zero.
  """
  return x / jnp.maximum(1.0, jnp.abs(x))


def _cli_fwd(x):
  return constrain_l_inf(x), x


def _cli_bwd(x, g):
  return (jnp.where((jnp.abs(x) >= 1.0) & (x * g > 0), 0.0, g),)


constrain_l_inf.defvjp(_cli_fwd, _cli_bwd)


def to_valid_rgb(t: jax.Array, decorrelate: bool = True, sigmoid: bool = True) -> jax.Array:
  """Map an unconstrained NHWC tensor to [0, 1]: optional decorrelation, then sigmoid or soft clip.

  Without sigmoid this is Lucid's path: add the colour mean (when decorrelating), then
  `constrain_l_inf(2 t - 1) / 2 + 0.5`.
  """
  if decorrelate:
    t = decorrelate_color(t)
  if sigmoid:
    return jax.nn.sigmoid(t)
  if decorrelate:
    t = t + jnp.asarray(COLOR_MEAN)
  return constrain_l_inf(2.0 * t - 1.0) / 2.0 + 0.5


@dataclasses.dataclass(frozen=True)
class ImageParam:
  """A batch-of-images parameterisation: `init(key) -> params`, `__call__(params) -> images`."""
  batch: int
  h: int
  w: int
  fft: bool = True
  decorrelate: bool = True
  sigmoid: bool = True
  sd: float = 0.01
  decay_power: float = 1.0
  flavor: str = "lucid"

  def init(self, key: jax.Array) -> jax.Array:
    """Initial parameters for `key`."""
    if self.fft:
      return fft_init(key, self.batch, self.h, self.w, 3, self.sd)
    return pixel_init(key, self.batch, self.h, self.w, 3, self.sd)

  def __call__(self, params: jax.Array) -> jax.Array:
    """Images (batch, h, w, 3) in [0, 1]."""
    t = fft_to_image(params, self.h, self.w, self.decay_power, self.flavor) if self.fft else params
    return to_valid_rgb(t, self.decorrelate, self.sigmoid)


def image_param(size: int | tuple[int, int], batch: int = 1, *, fft: bool = True,
                decorrelate: bool = True, sigmoid: bool = True, sd: float = 0.01,
                decay_power: float = 1.0, flavor: str = "lucid") -> ImageParam:
  """Lucid's `param.image(w, h, batch, sd, decorrelate, fft)` (+ `sigmoid`) as an `ImageParam`."""
  h, w = (size, size) if isinstance(size, int) else size
  if h < 1 or w < 1 or batch < 1:
    raise ValueError(f"image size and batch must be positive, got size={size}, batch={batch}")
  return ImageParam(batch, h, w, fft, decorrelate, sigmoid, sd, decay_power, flavor)


Param = Callable[[jax.Array], jax.Array]
