"""The natural-image magnitude spectrum MACO keeps fixed: compute it from any image folder, save,
load, resize to a canvas; the spectrum of the 1000 ImageNet sample photos ships as the default.

Recipe (successors_spec §1.4): each image is decoded to RGB in [0, 1], its shorter side resized to
S (PIL bilinear) and centre-cropped to S × S; its colours are expressed in the decorrelated basis
in which MACO optimises (each pixel's RGB vector times the inverse of Lucid's normalised colour
matrix, the inverse of `param.decorrelate_color`); then `|rfft2|` per channel is averaged over the
images. The result is a (3, S, S//2 + 1) array. Only its shape over frequencies and the ratio
between channels matter: MACO standardises the image after the inverse FFT, so the overall scale
cancels.

The shipped default (`cv_jax/featvis/data/imagenet_spectrum.npz`) was computed at S = 256 (the
sample photos' shorter side is 256, so no upsampling) and is stored as log-magnitude quantised
to uint16 between its min and max (at most 0.01 % relative error per bin; 0.15 MB instead of
0.8 MB of float32 at 512).
`resize_spectrum` maps a spectrum to another canvas by interpolating the log-magnitude at the
target bins' frequencies in cycles per pixel (on the centred frequency grid, so the wrap-around
of the vertical frequencies is respected).
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable, Sequence

import numpy as np

from cv_jax.featvis.param import COLOR_CORRELATION_NORMALIZED

DEFAULT_PATH = pathlib.Path(__file__).resolve().parent / "data" / "imagenet_spectrum.npz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SpectrumError(ValueError):
  """A spectrum file or image folder that cannot be used (message says what and how to fix)."""


def decorrelation_matrix() -> np.ndarray:
  """M with `t = rgb @ M` inverting `param.decorrelate_color` (rgb = t @ C_n.T)."""
  return np.linalg.inv(COLOR_CORRELATION_NORMALIZED.T.astype(np.float64))


def image_magnitude(image: np.ndarray, decorrelate: bool = True) -> np.ndarray:
  """|rfft2| per channel of one (S, S, C) image in [0, 1]: (C, S, S//2 + 1) float64."""
  x = np.asarray(image, np.float64)
  if decorrelate and x.shape[-1] == 3:
    x = x @ decorrelation_matrix()
  return np.abs(np.fft.rfft2(np.moveaxis(x, -1, 0), axes=(-2, -1)))


def list_images(folder: str | os.PathLike) -> list[pathlib.Path]:
  """Image files (by suffix) directly in `folder`, sorted; SpectrumError if none."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise SpectrumError(f"image folder {folder} does not exist; pass a folder of images")
  paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
  if not paths:
    raise SpectrumError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
  return paths


def compute_spectrum(images: Iterable[np.ndarray] | str | os.PathLike, size: int = 256,
                     decorrelate: bool = True, progress: bool = False) -> np.ndarray:
  """Mean magnitude spectrum (3, size, size//2 + 1) float32 of a folder or of (S, S, 3) arrays.

  A folder's images are loaded with the shorter side resized to `size` and centre-cropped
  (`cv_jax.data.load_image(path, size, size)`); arrays must already be size × size.
  """
  if isinstance(images, (str, os.PathLike)):
    from cv_jax.data import load_image
    paths = list_images(images)
    if progress:
      from tqdm.auto import tqdm
      paths = tqdm(paths, desc="spectrum", unit="image")
    images = (load_image(p, size, size) for p in paths)
  total, n = None, 0
  for im in images:
    im = np.asarray(im)
    if im.shape[:2] != (size, size):
      raise SpectrumError(f"image of shape {im.shape} is not {size}x{size}")
    m = image_magnitude(im, decorrelate)
    total = m if total is None else total + m
    n += 1
  if not n:
    raise SpectrumError("no images to compute a spectrum from")
  return (total / n).astype(np.float32)


def save_spectrum(path: str | os.PathLike, magnitude: np.ndarray, *, source: str = "",
                  n_images: int = 0) -> pathlib.Path:
  """Save as .npz (uint16-quantised log-magnitude, compact) or .npy (float32, Xplique-style)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  magnitude = np.asarray(magnitude, np.float32)
  if path.suffix == ".npy":
    np.save(path, magnitude)
  else:
    logm = np.log(np.maximum(magnitude.astype(np.float64), 1e-12))
    lo, hi = float(logm.min()), float(logm.max())
    q = np.round((logm - lo) / max(hi - lo, 1e-12) * 65535).astype(np.uint16)
    np.savez_compressed(path, log_magnitude_q=q, log_range=np.asarray([lo, hi]),
                        source=np.asarray(source), n_images=np.asarray(n_images))
  return path


def load_spectrum(path: str | os.PathLike | None = None) -> np.ndarray:
  """A magnitude spectrum (C, H, W//2 + 1) float32: ours (.npz), Xplique/faccent's (.npy), or
  the shipped ImageNet default when `path` is None or empty."""
  path = pathlib.Path(path) if path else DEFAULT_PATH
  if not path.exists():
    raise SpectrumError(f"spectrum file {path} not found; compute one with "
                        "`cv-jax spectrum --source=DIR --out=FILE.npz`")
  try:
    if path.suffix == ".npy":
      m = np.load(path).astype(np.float32)
    else:
      with np.load(path) as z:
        if "log_magnitude_q" in z:
          lo, hi = z["log_range"].astype(np.float64)
          m = np.exp(lo + z["log_magnitude_q"].astype(np.float64) / 65535 * (hi - lo))
          m = m.astype(np.float32)
        elif "magnitude" in z:
          m = z["magnitude"].astype(np.float32)
        else:
          raise SpectrumError(f"{path} has no 'log_magnitude_q' or 'magnitude' array")
  except (OSError, ValueError) as e:
    if isinstance(e, SpectrumError):
      raise
    raise SpectrumError(f"{path} is not a readable spectrum file ({e})") from None
  if m.ndim != 3 or m.shape[2] != m.shape[1] // 2 + 1:
    raise SpectrumError(f"{path}: expected a (C, S, S//2 + 1) magnitude, got shape {m.shape}")
  return m


def _interp_axis(a: np.ndarray, src: np.ndarray, dst: np.ndarray, axis: int) -> np.ndarray:
  """Linear interpolation of `a` along `axis` from increasing coordinates src to dst (clamped)."""
  i1 = np.clip(np.searchsorted(src, dst), 1, len(src) - 1)
  i0 = i1 - 1
  f = np.clip((dst - src[i0]) / (src[i1] - src[i0]), 0.0, 1.0)
  shape = [1] * a.ndim
  shape[axis] = len(dst)
  f = f.reshape(shape)
  return np.take(a, i0, axis=axis) * (1 - f) + np.take(a, i1, axis=axis) * f


def resize_spectrum(magnitude: np.ndarray, h: int, w: int) -> np.ndarray:
  """Resample a (C, H0, W0//2 + 1) magnitude to (C, h, w//2 + 1) at equal cycles per pixel.

  Interpolates log-magnitude bilinearly over (fy, fx) on the fftshifted grid; identity when the
  size is unchanged.
  """
  magnitude = np.asarray(magnitude, np.float64)
  c, h0, wf0 = magnitude.shape
  w0 = 2 * (wf0 - 1)
  if (h0, w0) == (h, w):
    return magnitude.astype(np.float32)
  logm = np.log(np.maximum(magnitude, 1e-30))
  fy0 = np.fft.fftshift(np.fft.fftfreq(h0))
  logm = np.fft.fftshift(logm, axes=1)
  fx0 = np.fft.rfftfreq(w0)
  out = _interp_axis(logm, fy0, np.fft.fftfreq(h), axis=1)  # target order is unshifted
  out = _interp_axis(out, fx0, np.fft.rfftfreq(w), axis=2)
  return np.exp(out).astype(np.float32)


def radial_profile(magnitude: np.ndarray,
                   bins: Sequence[float] | int = 16) -> tuple[np.ndarray, np.ndarray]:
  """Mean magnitude (over channels) in radial frequency bins: (bin centres, means)."""
  _, h, wf = magnitude.shape
  w = 2 * (wf - 1)
  fr = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
  edges = np.linspace(0, 0.5, bins + 1) if isinstance(bins, int) else np.asarray(bins)
  m = magnitude.mean(0)
  centres, means = [], []
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (fr >= lo) & (fr < hi) & (fr > 0)
    if sel.any():
      centres.append(fr[sel].mean())
      means.append(m[sel].mean())
  return np.asarray(centres), np.asarray(means)
