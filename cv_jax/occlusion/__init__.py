"""Occlusion maps: a unit's activation for every position of a sliding occluder (paper §2.3).

    from cv_jax import models, occlusion
    model = models.load("googlenet_bvlc", "bvlc_googlenet_blobs.npz")
    res = occlusion.occlusion_maps(model, image, "mixed4a_pre_relu", [257, 486])
    res.maps.shape            # (68, 68, 2): rows x cols of occluder starts, one map per unit
    (rmin, cmin), (rmax, cmax) = occlusion.extreme_positions(res.maps[..., 0])

Conventions (Zimmermann et al. 2021, `occlusion_utils.py` and notebooks 2-3):

* Occluder starts are 0, stride, 2*stride, ... while start + size <= H (224 px, 90 px, stride 2:
  68 starts per axis, 4,624 positions). The occluded region is rows [r, r+size) x cols [c, c+size);
  the first image axis is the row. Position index = row-major (row outer, column inner).
* Fill "mean": every channel of the square is set to the mean of that channel over the pixels it
  covers, computed on the un-occluded image. Also: a constant colour, "blur" (the pixels of a
  Gaussian-blurred copy) or any (H, W, 3) array to copy the region from.
* The activation of a unit is the spatial mean of its channel in the requested layer (the paper
  uses the pre-ReLU block concat, `mixedXX_pre_relu`, which `Unit.parse("mixed4a/3x3:10")` gives).
* The paper's saved arrays have a 4,625th entry (a padding copy of the un-occluded image from its
  last forward batch, used as the "base"). It is not reproduced: `maps` holds exactly the
  positions and `base` the un-occluded activations.
* argmin/argmax ties go to the first row-major index (numpy's rule).

All positions are evaluated by one jit-compiled program per (model, layer, image size, occluder,
chunk, fill kind): positions are processed in chunks of `chunk` occluded copies (vmapped mask
construction + one batched forward pass truncated at the layer), chunks run in a `lax.map`.
All channels of the layer are computed at once, so asking for many units of one layer is free.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cv_jax.models import Network, Unit

__all__ = ["PAPER_OCCLUDER_SIZES", "OcclusionResult", "occlusion_maps", "occlude", "extreme_positions", "blur_reference",
           "gaussian_kernel", "gaussian_blur", "patch_means", "occluder_starts", "occluder_size",
           "forward_flops", "default_chunk", "load_query"]

Fill = Any  # "mean" | "blur" | float | (r, g, b) | (H, W, 3) array

# The paper's occluders for 224 px images (CU `occlusion_utils.py`: hard-coded lists, not a
# rounding rule): percent of the side -> pixels. Grids at stride 2: 80, 68, 57 per axis.
PAPER_OCCLUDER_SIZES = {30: 66, 40: 90, 50: 112}


# --- geometry ------------------------------------------------------------------------------------

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


# --- Gaussian blur (OpenCV GaussianBlur, BORDER_REFLECT_101) ------------------------------------

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


# --- single occlusions and extremes --------------------------------------------------------------

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


def extreme_positions(map2d) -> tuple[tuple[int, int], tuple[int, int]]:
  """(argmin (row, col), argmax (row, col)) of a 2-D map, ties to the first row-major index.

  Indices are grid indices; multiply by the stride (or index `OcclusionResult.starts`) for pixels.
  """
  m = np.asarray(map2d)
  if m.ndim != 2 or m.size == 0:
    raise ValueError(f"expected a non-empty 2-D map, got shape {m.shape}")
  if np.isnan(m).any():
    raise ValueError("map contains NaN")
  lo = np.unravel_index(int(np.argmin(m)), m.shape)
  hi = np.unravel_index(int(np.argmax(m)), m.shape)
  return (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1]))


# --- the batched program -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OcclusionResult:
  """Occlusion maps of one image.

  maps: (rows, cols, n_units) float32 activation with the occluder at grid (i, j), i.e. at pixel
    (starts[0][i], starts[1][j]). base: (n_units,) activations of the un-occluded image.
  starts: (row starts, col starts) in pixels. size: occluder side in pixels.
  units: the `Unit`s, in map order. layer, stride, fill: as requested.
  """
  maps: np.ndarray
  base: np.ndarray
  starts: tuple[np.ndarray, np.ndarray]
  size: int
  units: tuple[Unit, ...] = ()
  layer: str = ""
  stride: int = 1
  fill: str = "mean"

  def extremes(self, k: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixel starts ((row, col) of argmin, (row, col) of argmax) for unit `k` (paper ties)."""
    (a, b), (c, d) = extreme_positions(self.maps[..., k])
    r, cc = self.starts
    return (int(r[a]), int(cc[b])), (int(r[c]), int(cc[d]))

  def relative_difference(self, k: int = 0) -> float:
    """The paper's relative activation difference (max - min) / base (Fig. 7 analysis), with
    max/min over the positions and the base, as over its 4,625-entry arrays."""
    vals = np.append(self.maps[..., k].reshape(-1), self.base[k])
    return float((vals.max() - vals.min()) / self.base[k])

  def flat(self, k: int = 0) -> np.ndarray:
    """The 1-D activation array of unit `k` in the paper's position order (without the extra entry)."""
    return self.maps[..., k].reshape(-1)


_PROGRAMS: dict[tuple, tuple[Network, Any]] = {}


def _unit_spatial_mean(y: jax.Array) -> jax.Array:
  return jnp.mean(y, axis=(1, 2)) if y.ndim == 4 else y.reshape(y.shape[0], -1)


def _program(model: Network, layer: str, size: int, fill_kind: str, incremental: bool = True):
  """jit(params, image, fill_img, colours (K, B, 3), rows (K, B), cols (K, B))
  -> (activations (K, B, channels), un-occluded activations (channels,)).

  One compiled program per (model, layer, size, fill kind, incremental) and input shapes; cached.
  With `incremental` (block-concat layers only) the exact dirty-window forward pass of
  `cv_jax.occlusion.incremental` is used, else the plain batched forward on full occluded copies.
  """
  from cv_jax.models import network
  from cv_jax.occlusion import incremental as inc
  incremental = incremental and inc.supported(model, layer)
  key = (id(model), layer, size, fill_kind, incremental)
  hit = _PROGRAMS.get(key)
  if hit is not None and hit[0] is model:
    return hit[1]

  def squares(image, fill_img, colours, rows, cols):
    if fill_kind == "image":
      return jax.vmap(lambda r, c: jax.lax.dynamic_slice(fill_img, (r, c, 0), (size, size, 3)))(
          rows, cols)
    return jnp.broadcast_to(colours[:, None, None, :], (rows.shape[0], size, size, 3))

  def chunk_plain(params, image, fill_img, colours, rows, cols):
    h, w = image.shape[:2]
    ri = jnp.arange(h)
    ci = jnp.arange(w)

    def one(r, c, colour):
      m = ((ri >= r) & (ri < r + size))[:, None, None] & ((ci >= c) & (ci < c + size))[None, :, None]
      src = fill_img if fill_kind == "image" else colour[None, None, :]
      return jnp.where(m, src, image)

    x = jax.vmap(one)(rows, cols, colours)
    return _unit_spatial_mean(model.apply(params, x, [layer])[layer])

  def run(params, image, fill_img, colours, rows, cols):
    if not incremental:
      base = _unit_spatial_mean(model.apply(params, image[None], [layer])[layer])[0]
      return jax.lax.map(lambda a: chunk_plain(params, image, fill_img, *a),
                         (colours, rows, cols)), base
    plan = inc.Plan(model, layer, image.shape[:2])
    maps = plan.base_maps(params, network.preprocess(model.spec, image[None]))
    target = plan.target_base(params, maps)

    def chunk_inc(a):
      c, r, q = a
      sq = network.preprocess(model.spec, squares(image, fill_img, c, r, q))
      return inc.spatial_means(plan, params, maps, target, sq, jnp.stack([r, q], axis=1))

    return jax.lax.map(chunk_inc, (colours, rows, cols)), jnp.mean(target, axis=(0, 1))

  fn = jax.jit(run)
  _PROGRAMS[key] = (model, fn)
  return fn


def _layer_bytes(model: Network, layer: str, shape: Sequence[int]) -> int:
  """Bytes of all activations up to `layer` for one image (a bound on a forward's working set)."""
  names = model.layer_names[: model.layer_names.index(layer) + 1]
  out = jax.eval_shape(lambda p, x: model.apply(p, x, names), model.params(),
                       jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  return int(sum(4 * math.prod(v.shape) for v in out.values()))


def default_chunk(model: Network, layer: str, shape: Sequence[int] = (224, 224, 3),
                  budget: int | None = None) -> int:
  """Positions per forward pass: fits `budget` bytes of activations (default by backend).

  CPU: 64 MiB-scale batches are as fast as large ones and keep the cache warm; default budget
  1 GiB capped at 32 positions. GPU/TPU: a quarter of device memory, capped at 512.
  """
  per = _layer_bytes(model, model.resolve(layer), shape)
  cpu = jax.default_backend() == "cpu"
  if budget is None:
    if cpu:
      budget = 1 << 30
    else:
      stats = jax.devices()[0].memory_stats() or {}
      budget = int(stats.get("bytes_limit", 16 << 30)) // 4
  cap = 32 if cpu else 512
  return int(max(1, min(cap, budget // max(per, 1))))


def _resolve_units(model: Network, layer: str | None, units) -> tuple[str, list[Unit]]:
  if units is not None and not isinstance(units, (list, tuple)):
    units = [units]
  parsed: list[Unit] = []
  for u in units or []:
    if isinstance(u, (int, np.integer)):
      if layer is None:
        raise ValueError("integer units need a layer")
      parsed.append(Unit.from_channel(layer, int(u), model))
    else:
      parsed.append(Unit.parse(u, model))
  if layer is None:
    if not parsed:
      raise ValueError("give a layer or at least one unit")
    layer = parsed[0].layer
  layer = model.resolve(layer)
  bad = [str(u) for u in parsed if u.layer != layer]
  if bad:
    raise ValueError(f"units {bad} are not in layer {layer!r} (one layer per occlusion_maps call; "
                     f"the paper's units live in the pre-ReLU concat, e.g. 'mixed4a_pre_relu')")
  if not parsed:
    parsed = [Unit(layer, c) for c in range(model.channels(layer))]
  return layer, parsed


def _check_image(image) -> np.ndarray:
  img = np.asarray(image, dtype=np.float32)
  if img.ndim == 4 and img.shape[0] == 1:
    img = img[0]
  if img.ndim != 3 or img.shape[-1] != 3:
    raise ValueError(f"image must be (H, W, 3) RGB, got shape {img.shape}")
  if not np.isfinite(img).all():
    raise ValueError("image contains NaN or inf")
  return img


def _fill_arrays(img: np.ndarray, fill: Fill, size: int, rs: np.ndarray, cs: np.ndarray):
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


def occlusion_maps(model: Network, image, layer: str | None, units=None, *, size: int | float = 90,
                   stride: int = 2, fill: Fill = "mean", chunk: int | None = None,
                   progress: bool = False, incremental: bool = True) -> OcclusionResult:
  """Activation of `units` of `layer` for every occluder position over `image`.

  image: (H, W, 3) float RGB in [0, 1] (e.g. `cv_jax.data.load_image`). layer: a layer name
  (Caffe aliases accepted for BVLC); None takes the layer of the units. units: channel indices,
  unit strings ("mixed4a/3x3:10", "mixed4a_pre_relu:257") or `Unit`s, all of `layer`; None =
  every channel. size: pixels, or a fraction of the shorter side. stride: grid step in pixels.
  fill: see `occlude`. chunk: positions per forward pass (default `default_chunk`). progress:
  a tqdm bar per chunk (runs the same compiled chunk program once per chunk; without it the whole
  scan is one call). incremental: for block-concat layers, compute each layer only on the window
  the occluder can change (exact; ~1.9x faster to mixed4a on a 2-core CPU); False: full
  forward passes.

  Returns an `OcclusionResult` (maps (rows, cols, units), base (units,), starts, size).
  """
  from tqdm import tqdm
  img = _check_image(image)
  layer, unit_list = _resolve_units(model, layer, units)
  size = occluder_size(size, img.shape)
  rs = occluder_starts(img.shape[0], size, stride)
  cs = occluder_starts(img.shape[1], size, stride)
  kind, colours, fill_img = _fill_arrays(img, fill, size, rs, cs)
  n = len(rs) * len(cs)
  if chunk is None:
    chunk = default_chunk(model, layer, img.shape)
  chunk = int(max(1, min(chunk, n)))
  n_chunks = -(-n // chunk)
  pad = n_chunks * chunk - n
  rows = np.repeat(rs, len(cs))
  cols = np.tile(cs, len(rs))
  # Pad with copies of the last position (results dropped).
  rows = np.concatenate([rows, np.full(pad, rows[-1], np.int32)]).reshape(n_chunks, chunk)
  cols = np.concatenate([cols, np.full(pad, cols[-1], np.int32)]).reshape(n_chunks, chunk)
  colours = np.concatenate([colours, np.repeat(colours[-1:], pad, 0)]).reshape(n_chunks, chunk, 3)

  fn = _program(model, layer, size, kind, incremental)
  params = model.params()
  img_j, fill_j = jnp.asarray(img), jnp.asarray(fill_img)
  idx = np.asarray([u.channel for u in unit_list])
  if progress:
    parts = []
    for k in tqdm(range(n_chunks), unit="chunk", desc=f"occlusion {layer}"):
      out, base_all = fn(params, img_j, fill_j, colours[k:k + 1], rows[k:k + 1], cols[k:k + 1])
      parts.append(np.asarray(out)[..., idx])
    acts = np.concatenate(parts)
  else:
    out, base_all = fn(params, img_j, fill_j, colours, rows, cols)
    acts = np.asarray(out)[..., idx]
  acts = acts.reshape(n_chunks * chunk, len(idx))[:n]
  base = np.asarray(base_all)[idx]
  return OcclusionResult(maps=acts.reshape(len(rs), len(cs), len(idx)).astype(np.float32),
                         base=base.astype(np.float32), starts=(rs, cs), size=size,
                         units=tuple(unit_list), layer=layer, stride=stride,
                         fill=fill if isinstance(fill, str) else "custom")


def blur_reference(model: Network, image, unit, *, size: int | float = 90, stride: int = 2,
                   ksize: int = 21, sigma: float = 3.5, chunk: int | None = None,
                   progress: bool = False, incremental: bool = True):
  """The paper's blur reference (§3.4): `image` blurred everywhere except one sharp window.

  The whole image is blurred (separable `ksize` Gaussian, `sigma`, reflect-101 borders, OpenCV's
  GaussianBlur); for every window position on the occluder grid the sharp pixels are pasted
  back and the unit's activation is computed; the window with the largest activation (ties to the
  first row-major index) is kept. Returns (image, (row, col) pixel start of the window, activation).
  """
  img = _check_image(image)
  u = Unit.parse(unit, model)
  blurred = np.asarray(gaussian_blur(img, ksize, sigma))
  res = occlusion_maps(model, blurred, u.layer, [u], size=size, stride=stride, fill=img,
                       chunk=chunk, progress=progress, incremental=incremental)
  _, (i, j) = extreme_positions(res.maps[..., 0])
  r, c = int(res.starts[0][i]), int(res.starts[1][j])
  out = occlude(blurred, r, c, res.size, fill=img)
  return out, (r, c), float(res.maps[i, j, 0])


def forward_flops(model: Network, layer: str, shape: Sequence[int] = (224, 224, 3)) -> int:
  """Multiply-add FLOPs (2 per MAC) of the convolutions and dense layers of one forward pass
  truncated at `layer` (pooling, LRN, ReLU not counted)."""
  layer = model.resolve(layer)
  names = model.layer_names[: model.layer_names.index(layer) + 1]
  pre = [n for n in names if n.endswith("_pre_relu") or n.endswith("_pre_activation")]
  convs = model.spec.conv_layers(model.aux_heads)
  out = jax.eval_shape(lambda p, x: model.apply(p, x, pre), model.params(),
                       jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  total = 0
  for n in pre:
    base = n[: -len("_pre_relu")] if n.endswith("_pre_relu") else n[: -len("_pre_activation")]
    if base not in convs:
      continue  # block concats
    k, cin, cout = convs[base]
    spatial = math.prod(out[n].shape[1:-1]) if len(out[n].shape) == 4 else 1
    total += 2 * spatial * max(k, 1) ** 2 * cin * cout
  return total


def load_query(path: str | os.PathLike, resize: int = 256, crop: int = 224) -> np.ndarray:
  """`cv_jax.data.load_image` with a ValueError naming the file when it is missing or corrupt."""
  from cv_jax.data import load_image
  if not os.path.isfile(path):
    raise ValueError(f"image not found: {path}")
  try:
    return load_image(path, resize, crop)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e
