"""Image-statistics baselines of the occlusion task, as the paper computes them.

Each baseline looks only at the un-occluded query image and the two occluder positions (the
arg-min and arg-max of the occlusion map) and picks the occlusion it predicts to cause the
larger activation drop; the *other* image is its answer. Like a participant, a baseline is
correct when its answer is the max-activation image. Strict inequalities, as in the paper's
analysis notebook (`cfv_main_figures.ipynb` cell 37): a tie counts as incorrect.

* Center: the occluder nearer the image centre causes the larger drop.
  `correct = dist(max) > dist(min)`. Two distances are provided:
  - "center": the intended 2-D distance of the patch centre (start + size/2) to the image
    centre ((H-1)/2, (W-1)/2) = (111.5, 111.5) at 224 px;
  - "center_published": what the paper's public code computes (`add_center_baseline_values_
    to_structure.py` l.52/55 passes (x_start, x_end) as (x_start, y_start)), a row-only distance
    sqrt((111.5 - r - s/2)^2 + (111.5 - r - s - s/2)^2).
* Variance: the occluder over the busier region causes the larger drop. `std` of all pixels
  and channels inside the patch, `correct = std(max) < std(min)`.
* Saliency: the occluder over the more salient region causes the larger drop. Mean saliency
  density inside the patch, `correct = sal(max) < sal(min)`. The saliency model is pluggable
  (`SaliencyModel`): the paper used DeepGaze IIE with a uniform centre bias (`DeepGazeIIE`
  adapter here, needs `deepgaze_pytorch` and its weights); the built-in default is
  `SpectralResidualSaliency` (Hou & Zhang 2007), model-free, implemented below in NumPy.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

BASELINES = ("center", "center_published", "variance", "saliency")
"""Baseline names, in the order of the tables. "center_published" is the paper-code variant."""

PAPER_KAPPA = {("center", "variance"): (0, 15), ("center", "saliency"): (-8, 12),
               ("variance", "saliency"): (31, 12)}
"""Paper Fig. 4 baseline-vs-baseline Cohen's kappa x100 (mean, 2 SEM)."""


def _check_image(image) -> np.ndarray:
  image = np.asarray(image, dtype=np.float64)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
  return image


def _check_patch(shape: Sequence[int], row: int, col: int, size: int) -> None:
  h, w = shape[:2]
  if size <= 0:
    raise ValueError(f"occluder size must be positive, got {size}")
  if not (0 <= row and row + size <= h and 0 <= col and col + size <= w):
    raise ValueError(f"occluder at ({row}, {col}) of size {size} does not fit an image of "
                     f"{h}x{w}")


def center_distance(row: int, col: int, size: int, shape: Sequence[int] = (224, 224)) -> float:
  """Intended Center distance: patch centre (row + size/2, col + size/2) to the image centre.

  The image centre is ((H-1)/2, (W-1)/2), i.e. the paper's 111.5 at 224 px.
  """
  _check_patch(shape, row, col, size)
  cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
  return float(math.hypot(cy - (row + size / 2), cx - (col + size / 2)))


def center_distance_published(row: int, col: int, size: int,
                              shape: Sequence[int] = (224, 224)) -> float:
  """The Center distance exactly as the paper's public code computes it (row-only).

  `calculate_patch_center_distance(x_start, y_start, s)` is called with the position tuple's
  first two entries, which are (x_start, x_end = x_start + s); `col` is therefore ignored:
  sqrt((c - (row + s + s/2))^2 + (c - (row + s/2))^2) with c = (H-1)/2 (= 111.5 at 224).
  For s = 90 this is sqrt((row + 23.5)^2 + (66.5 - row)^2).
  """
  _check_patch(shape, row, col, size)
  c = (shape[0] - 1) / 2
  x_mean = row + size / 2
  y_mean = (row + size) + size / 2
  return float(math.sqrt((c - y_mean) ** 2 + (c - x_mean) ** 2))


def patch_std(image, row: int, col: int, size: int) -> float:
  """Standard deviation of all pixels and channels of `image` (HxWx3) inside the patch."""
  image = _check_image(image)
  _check_patch(image.shape, row, col, size)
  return float(np.std(image[row:row + size, col:col + size, :]))


def patch_saliency(saliency_map, row: int, col: int, size: int) -> float:
  """Mean of a saliency density map (HxW) inside the patch (the paper's patch score)."""
  saliency_map = np.asarray(saliency_map, dtype=np.float64)
  if saliency_map.ndim != 2:
    raise ValueError(f"expected an HxW saliency map, got shape {saliency_map.shape}")
  _check_patch(saliency_map.shape, row, col, size)
  return float(np.mean(saliency_map[row:row + size, col:col + size]))


# ------------------------------------------------------------------------------------------
# Saliency models


@runtime_checkable
class SaliencyModel(Protocol):
  """A saliency model: `model(image)` with image HxWx3 float in [0, 1] -> HxW float64 map,
  non-negative and summing to 1 (a fixation density). `name` labels it in reports."""

  name: str

  def __call__(self, image: np.ndarray) -> np.ndarray:
    ...


def _gaussian_kernel1d(sigma: float) -> np.ndarray:
  radius = max(1, int(math.ceil(3 * sigma)))
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def _filter_reflect(x: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Separable 2-D filtering of a 2-D array with the 1-D kernel `k`, reflect padding."""
  r = len(k) // 2
  pad = np.pad(x, r, mode="reflect" if min(x.shape) > r else "edge")
  tmp = np.stack([np.convolve(row, k, mode="valid") for row in pad], 0)
  return np.stack([np.convolve(col, k, mode="valid") for col in tmp.T], 1)


def _resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of a 2-D float array to (H, W) (PIL, mode F)."""
  img = Image.fromarray(np.asarray(x, np.float32), mode="F")
  return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float64)


def _normalise(density: np.ndarray) -> np.ndarray:
  density = np.clip(np.asarray(density, np.float64), 0, None)
  total = density.sum()
  if not np.isfinite(total) or total <= 0:
    return np.full(density.shape, 1.0 / density.size)
  return density / total


class SpectralResidualSaliency:
  """Spectral-residual saliency (Hou & Zhang, CVPR 2007), on intensity and colour opponency.

  For each of the channels I = (R+G+B)/3, RG = R-G and BY = B-(R+G)/2 of the image resized to
  `width` px wide: the log amplitude spectrum L minus its `avg`x`avg` local mean is the
  spectral residual R; the channel's map is |IFFT(exp(R + i*phase))|^2 smoothed by a Gaussian
  of `sigma` px. Channels without contrast (std < 1e-6) are skipped. Each channel map is
  normalised to sum 1 and the channels are averaged, resized back to HxW (bilinear) and
  multiplied by the centre bias, which is uniform by default as in the paper's use of DeepGaze
  IIE (`center_bias` may be an HxW density instead). Model-free, deterministic.
  """

  name = "spectral_residual"

  def __init__(self, width: int = 64, avg: int = 3, sigma: float = 2.5,
               center_bias: np.ndarray | None = None):
    if width < 8:
      raise ValueError(f"width must be >= 8, got {width}")
    if avg < 1 or sigma <= 0:
      raise ValueError(f"avg must be >= 1 and sigma > 0, got {avg}, {sigma}")
    self.width, self.avg, self.sigma = int(width), int(avg), float(sigma)
    self.center_bias = center_bias

  def channel_maps(self, image) -> list[np.ndarray]:
    """The per-channel spectral-residual maps at the working resolution (unnormalised)."""
    image = _check_image(image)
    h, w = image.shape[:2]
    sw = self.width
    sh = max(8, int(round(h * sw / w)))
    r, g, b = (_resize(image[..., i], (sh, sw)) for i in range(3))
    channels = [(r + g + b) / 3, r - g, b - (r + g) / 2]
    box = np.ones(self.avg) / self.avg
    gauss = _gaussian_kernel1d(self.sigma)
    maps = []
    for ch in channels:
      if ch.std() < 1e-6:
        continue
      spec = np.fft.fft2(ch)
      log_amp = np.log(np.abs(spec) + 1e-12)
      phase = np.angle(spec)
      # Local average of the log spectrum with wrap-around (the spectrum is periodic).
      pad = self.avg // 2
      padded = np.pad(log_amp, pad, mode="wrap")
      tmp = np.stack([np.convolve(row, box, mode="valid") for row in padded], 0)
      smooth = np.stack([np.convolve(col, box, mode="valid") for col in tmp.T], 1)
      residual = log_amp - smooth
      sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
      maps.append(_filter_reflect(sal, gauss))
    return maps

  def __call__(self, image) -> np.ndarray:
    image = _check_image(image)
    h, w = image.shape[:2]
    maps = self.channel_maps(image)
    if not maps:
      sal = np.ones((h, w))
    else:
      small = np.mean([_normalise(m) for m in maps], axis=0)
      sal = _resize(small, (h, w))
    if self.center_bias is not None:
      bias = np.asarray(self.center_bias, np.float64)
      if bias.shape != (h, w):
        raise ValueError(f"center_bias has shape {bias.shape}, image is {h}x{w}")
      sal = sal * bias
    return _normalise(sal)


class DeepGazeIIE:
  """Adapter for DeepGaze IIE (Linardos et al. 2021), the saliency model the paper used.

  Needs the `deepgaze_pytorch` package (github.com/matthias-k/DeepGaze) and torch. The weights
  are fetched by `deepgaze_pytorch.DeepGazeIIE(pretrained=True)` unless `weights` names a local
  state-dict file. As in the paper (`add_saliency_baseline_values_to_structure.py`), the input
  is the image as float 0..255 NCHW and the centre bias is uniform, log(1/(H*W)); the output
  is exp(log density), renormalised to sum 1.
  """

  name = "deepgaze_iie"

  def __init__(self, weights: str | None = None, device: str = "cpu"):
    try:
      import torch  # noqa: F401
      import deepgaze_pytorch
    except ImportError as e:
      raise ImportError(
          "the DeepGaze IIE saliency baseline needs torch and the `deepgaze_pytorch` package "
          "(pip install git+https://github.com/matthias-k/DeepGaze) with its weights; "
          f"it could not be imported ({e}). Use saliency='spectral_residual' (the default) "
          "instead.") from e
    self.device = device
    if weights is None:
      model = deepgaze_pytorch.DeepGazeIIE(pretrained=True)
    else:
      import torch
      model = deepgaze_pytorch.DeepGazeIIE(pretrained=False)
      model.load_state_dict(torch.load(weights, map_location=device))
    self.model = model.to(device).eval()

  def __call__(self, image) -> np.ndarray:
    import torch
    image = _check_image(image)
    h, w = image.shape[:2]
    x = torch.tensor((image * 255.0).transpose(2, 0, 1)[None], dtype=torch.float32,
                     device=self.device)
    bias = torch.full((1, h, w), math.log(1.0 / (h * w)), dtype=torch.float32,
                      device=self.device)
    with torch.no_grad():
      log_density = self.model(x, bias)
    density = np.exp(log_density.detach().cpu().numpy().astype(np.float64).reshape(h, w))
    return _normalise(density)


SALIENCY_MODELS: dict[str, Callable[..., SaliencyModel]] = {
    "spectral_residual": SpectralResidualSaliency,
    "deepgaze_iie": DeepGazeIIE,
}


def get_saliency_model(name: str | SaliencyModel = "spectral_residual", **kwargs) -> SaliencyModel:
  """A saliency model by name ("spectral_residual", "deepgaze_iie") or pass one through."""
  if not isinstance(name, str):
    if not callable(name):
      raise ValueError(f"saliency model must be a name or a callable, got {name!r}")
    return name
  if name not in SALIENCY_MODELS:
    raise ValueError(f"unknown saliency model {name!r}; choose one of {sorted(SALIENCY_MODELS)}")
  return SALIENCY_MODELS[name](**kwargs)


# ------------------------------------------------------------------------------------------
# Per-trial values and scoring


def baseline_values(image, pos_min: Sequence[int], pos_max: Sequence[int], size: int,
                    saliency_map: np.ndarray | None = None) -> dict[str, dict[str, float]]:
  """The baselines' patch statistics for one trial.

  Args:
    image: the un-occluded query, HxWx3 in [0, 1] (the paper reads the saved uint8 PNG / 255).
    pos_min, pos_max: (row, col) of the min- and max-activation occluders.
    size: occluder side in px.
    saliency_map: HxW density of the query (omit to skip the saliency baseline).

  Returns:
    {baseline: {"min": value, "max": value}} for "center" (distance), "center_published"
    (distance), "variance" (pixel std) and, with a map, "saliency" (mean density).
  """
  image = _check_image(image)
  shape = image.shape[:2]
  (rn, cn), (rx, cx) = (tuple(int(v) for v in pos_min), tuple(int(v) for v in pos_max))
  out = {
      "center": {"min": center_distance(rn, cn, size, shape),
                 "max": center_distance(rx, cx, size, shape)},
      "center_published": {"min": center_distance_published(rn, cn, size, shape),
                           "max": center_distance_published(rx, cx, size, shape)},
      "variance": {"min": patch_std(image, rn, cn, size), "max": patch_std(image, rx, cx, size)},
  }
  if saliency_map is not None:
    if np.shape(saliency_map) != shape:
      raise ValueError(f"saliency map shape {np.shape(saliency_map)} != image shape {shape}")
    out["saliency"] = {"min": patch_saliency(saliency_map, rn, cn, size),
                       "max": patch_saliency(saliency_map, rx, cx, size)}
  return out


def score(values: Mapping[str, Mapping[str, float]]) -> dict[str, bool]:
  """Correctness of each baseline from its {"min", "max"} values (strict; ties are incorrect).

  center / center_published: correct iff dist(max) > dist(min) (it predicts the central
  occluder to hurt more, so it answers the peripheral one). variance: std(max) < std(min).
  saliency: sal(max) < sal(min).
  """
  rules = {"center": lambda mn, mx: mx > mn, "center_published": lambda mn, mx: mx > mn,
           "variance": lambda mn, mx: mx < mn, "saliency": lambda mn, mx: mx < mn}
  out = {}
  for name, v in values.items():
    if name not in rules:
      raise ValueError(f"unknown baseline {name!r}; known: {sorted(rules)}")
    out[name] = bool(rules[name](float(v["min"]), float(v["max"])))
  return out


def choice(values: Mapping[str, Mapping[str, float]]) -> dict[str, str | None]:
  """Which image ("max"/"min") each baseline answers (None on a tie, scored incorrect)."""
  out = {}
  for name, v in values.items():
    mn, mx = float(v["min"]), float(v["max"])
    if mn == mx:
      out[name] = None
      continue
    correct = score({name: v})[name]
    out[name] = "max" if correct else "min"
  return out
