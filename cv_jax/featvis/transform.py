"""Random image transforms of Lucid and Lucent, as pure functions of the image and explicit draws.

Every transform is a small frozen dataclass with

* `draw(key)` -> its random draw (int32 array; shared by the whole batch, as in both libraries),
* `__call__(x, draw)` -> the transformed NHWC batch,
* `out_size((h, w))` -> the static output size.

`random_scale` changes the image size by a *random* amount. Under `jit` shapes must be static,
so a `Pipeline` turns it into a `lax.switch` with one branch per scale: each branch is the
exact per-scale program (the model sees exactly the image Lucid would feed it, no fixed
canvas, no extra padding) and only the drawn branch executes at run time. The branch ends at
the next fixed-size transform (e.g. Lucent's upsample to 224), or else includes the rest of
the step (model and objective). We chose this over resampling onto a fixed canvas because a
canvas changes what the model sees (zero borders enter the channel means) and so would not
match Lucid's variable-size recipe.

Modes (Lucid's and Lucent's transforms):
* "lucid": jitter = random crop (offset 0..d inclusive, image shrinks); scale = TF1 legacy
  `resize_bilinear` (align_corners=False, no half-pixel centres) to int(s·H), no re-pad; rotate =
  `tf.contrib.image.rotate` nearest neighbour, zero fill, radians = 3.14·deg/180.
* "lucent": jitter = bilinear translate by 0..d-1 px (size kept, zero fill); scale =
  align-corners bilinear to ceil(s·H) then zero pad by ceil((H - new)/2) when shrinking;
  rotate = bilinear about ((W-1)/2, (H-1)/2) with zero fill; final upsample to 224
  (align_corners=True).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

MODES = ("lucid", "lucent")


def _check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"unknown transform mode {mode!r}; choose one of {MODES}")
  return mode


# --- samplers --------------------------------------------------------------------------------------

def _gather(x: jax.Array, yi: jax.Array, xi: jax.Array) -> jax.Array:
  """x[:, yi, xi, :] with zero where (yi, xi) lies outside the image."""
  h, w = x.shape[1:3]
  valid = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
  v = x[:, jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1), :]
  return v * valid[None, :, :, None].astype(x.dtype)


def sample_bilinear(x: jax.Array, ys: jax.Array, xs: jax.Array) -> jax.Array:
  """Bilinear sampling at pixel coordinates (ys, xs) (each (Ho, Wo)); zeros outside.

  Each of the four neighbours outside the image contributes 0, like PyTorch
  `grid_sample(padding_mode="zeros")`.
  """
  y0 = jnp.floor(ys)
  x0 = jnp.floor(xs)
  wy = (ys - y0)[None, :, :, None]
  wx = (xs - x0)[None, :, :, None]
  y0 = y0.astype(jnp.int32)
  x0 = x0.astype(jnp.int32)
  return ((1 - wy) * (1 - wx) * _gather(x, y0, x0) + (1 - wy) * wx * _gather(x, y0, x0 + 1)
          + wy * (1 - wx) * _gather(x, y0 + 1, x0) + wy * wx * _gather(x, y0 + 1, x0 + 1))


def _round_half_away(v: jax.Array) -> jax.Array:
  return jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)


def sample_nearest(x: jax.Array, ys: jax.Array, xs: jax.Array) -> jax.Array:
  """Nearest-neighbour sampling (C `round`, half away from zero, as TF); zeros outside."""
  return _gather(x, _round_half_away(ys).astype(jnp.int32), _round_half_away(xs).astype(jnp.int32))


def _lerp_axis(x: jax.Array, axis: int, i0: np.ndarray, i1: np.ndarray, f: np.ndarray) -> jax.Array:
  shape = [1] * x.ndim
  shape[axis] = len(f)
  f = jnp.asarray(f, x.dtype).reshape(shape)
  return jnp.take(x, jnp.asarray(i0), axis=axis) * (1 - f) + jnp.take(x, jnp.asarray(i1), axis=axis) * f


def _tf_legacy_coords(n_in: int, n_out: int):
  scale = np.float32(n_in) / np.float32(n_out)
  src = np.arange(n_out, dtype=np.float32) * scale
  i0 = np.floor(src).astype(np.int32)
  i1 = np.minimum(np.ceil(src).astype(np.int32), n_in - 1)
  return np.minimum(i0, n_in - 1), i1, (src - np.floor(src)).astype(np.float32)


def _align_corners_coords(n_in: int, n_out: int):
  scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
  src = np.arange(n_out, dtype=np.float32) * scale
  i0 = src.astype(np.int32)
  i1 = np.minimum(i0 + 1, n_in - 1)
  return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool) -> jax.Array:
  """Bilinear resize of an NHWC batch to `size` (static).

  align_corners=False is TF1's legacy `resize_bilinear` (src = dst · in/out, no half-pixel
  centres, no antialiasing); True is PyTorch `interpolate(..., align_corners=True)`.
  (`jax.image.resize` matches neither: half-pixel centres and antialiasing.)
  """
  coords = _align_corners_coords if align_corners else _tf_legacy_coords
  h, w = x.shape[1:3]
  x = _lerp_axis(x, 1, *coords(h, size[0]))
  return _lerp_axis(x, 2, *coords(w, size[1]))


# --- transforms ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pad:
  """Pad every side by `width`: mode "constant" (with `value`, Lucid/Lucent use 0.5) or "reflect"."""
  width: int
  mode: str = "constant"
  value: float = 0.5
  fixed = False
  branches = 0

  def draw(self, key):
    return jnp.zeros((), jnp.int32)

  def out_size(self, hw):
    return hw[0] + 2 * self.width, hw[1] + 2 * self.width

  def __call__(self, x, draw=None):
    p = ((0, 0), (self.width, self.width), (self.width, self.width), (0, 0))
    if self.mode == "constant":
      return jnp.pad(x, p, mode="constant", constant_values=self.value)
    if self.mode in ("reflect", "symmetric", "edge"):
      return jnp.pad(x, p, mode=self.mode)
    raise ValueError(f"unknown pad mode {self.mode!r}; use 'constant', 'reflect', 'symmetric', 'edge'")


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Random shift by up to `d` pixels; draw = (dy, dx).

  lucid: `tf.random_crop` to (H-d, W-d), offsets uniform in 0..d. lucent: translate the content
  by (dy, dx) uniform in 0..d-1 with bilinear warping and zero fill, size kept. With
  `legacy_kornia=True` the shift is d·W/(W-1) (kornia <= 0.4.1's align_corners mix-up).
  """
  d: int
  mode: str = "lucid"
  legacy_kornia: bool = False
  fixed = False
  branches = 0

  def draw(self, key):
    hi = self.d + 1 if self.mode == "lucid" else self.d
    return jax.random.randint(key, (2,), 0, max(hi, 1), jnp.int32)

  def out_size(self, hw):
    return (hw[0] - self.d, hw[1] - self.d) if self.mode == "lucid" else tuple(hw)

  def __call__(self, x, draw):
    b, h, w, c = x.shape
    if self.mode == "lucid":
      return lax.dynamic_slice(x, (0, draw[0], draw[1], 0), (b, h - self.d, w - self.d, c))
    dy = draw[0].astype(jnp.float32)
    dx = draw[1].astype(jnp.float32)
    if self.legacy_kornia:
      dy = dy * h / max(h - 1, 1)
      dx = dx * w / max(w - 1, 1)
    ys = jnp.arange(h, dtype=jnp.float32)[:, None] - dy + jnp.zeros((1, w), jnp.float32)
    xs = jnp.arange(w, dtype=jnp.float32)[None, :] - dx + jnp.zeros((h, 1), jnp.float32)
    return sample_bilinear(x, ys, xs)


@dataclasses.dataclass(frozen=True)
class RandomScale:
  """Resize by a factor drawn uniformly from `scales`; draw = index into `scales`.

  lucid: TF1 legacy bilinear to int(float32(s)·H), no re-pad. lucent: align-corners bilinear to
  ceil(s·H), then zero pad ceil((H - new)/2) on each side when shrinking (Lucent's
  [pad_y, pad_x]*2 order, i.e. left/top get pad_y, right/bottom pad_x).
  """
  scales: tuple[float, ...]
  mode: str = "lucid"
  fixed = False

  @property
  def branches(self):
    return len(self.scales)

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.scales), jnp.int32)

  def _sizes(self, hw, k):
    s = self.scales[k]
    if self.mode == "lucid":
      new = tuple(int(np.float32(s) * np.float32(n)) for n in hw)
      return new, (0, 0, 0, 0)
    new = tuple(int(math.ceil(s * n)) for n in hw)
    pad_y = max(0, int(math.ceil((hw[0] - new[0]) / 2)))
    pad_x = max(0, int(math.ceil((hw[1] - new[1]) / 2)))
    return new, (pad_y, pad_x, pad_y, pad_x)  # top, bottom, left, right

  def out_size(self, hw, k: int = 0):
    new, (t, b, l, r) = self._sizes(hw, k)
    return new[0] + t + b, new[1] + l + r

  def apply_static(self, x, k: int):
    """The transform for scale index `k` (a Python int)."""
    new, (t, b, l, r) = self._sizes(x.shape[1:3], k)
    y = resize_bilinear(x, new, align_corners=self.mode == "lucent")
    if t or b or l or r:
      y = jnp.pad(y, ((0, 0), (t, b), (l, r), (0, 0)))
    return y

  def __call__(self, x, draw):
    if not isinstance(draw, (int, np.integer)):
      raise ValueError("RandomScale changes the shape by a traced amount; run it inside a Pipeline "
                       "(lax.switch) or call apply_static(x, k) with a Python int")
    return self.apply_static(x, int(draw))


@dataclasses.dataclass(frozen=True)
class RandomRotate:
  """Rotate by an angle (degrees) drawn uniformly from `angles`; draw = index into `angles`.

  Positive angles turn the content counter-clockwise on screen about ((W-1)/2, (H-1)/2): output
  pixel (y, x) reads input (c_y + sin·dx + cos·dy, c_x + cos·dx - sin·dy). lucid: nearest
  neighbour, radians = 3.14·deg/180 (as Lucid). lucent: bilinear, exact π. Zero fill.
  """
  angles: tuple[float, ...]
  mode: str = "lucid"
  fixed = False
  branches = 0

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.angles), jnp.int32)

  def out_size(self, hw):
    return tuple(hw)

  def __call__(self, x, draw):
    deg = jnp.asarray(np.asarray(self.angles, np.float32))[draw]
    return rotate(x, deg, self.mode)


def rotate(x: jax.Array, degrees: jax.Array | float, mode: str = "lucid") -> jax.Array:
  """Rotate an NHWC batch by `degrees` (see `RandomRotate`)."""
  _check_mode(mode)
  pi = np.float32(3.14) if mode == "lucid" else np.float32(np.pi)
  a = jnp.asarray(degrees, jnp.float32) * pi / np.float32(180.0)
  h, w = x.shape[1:3]
  cos, sin = jnp.cos(a), jnp.sin(a)
  yy = jnp.arange(h, dtype=jnp.float32)[:, None] + jnp.zeros((1, w), jnp.float32)
  xx = jnp.arange(w, dtype=jnp.float32)[None, :] + jnp.zeros((h, 1), jnp.float32)
  if mode == "lucid":
    # tf.contrib.image.angles_to_projective_transforms, applied to output coordinates.
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    xs = cos * xx - sin * yy + x_off
    ys = sin * xx + cos * yy + y_off
    return sample_nearest(x, ys, xs)
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  dx, dy = xx - cx, yy - cy
  return sample_bilinear(x, cy + sin * dx + cos * dy, cx + cos * dx - sin * dy)


@dataclasses.dataclass(frozen=True)
class CropOrPadTo:
  """Central crop or zero pad to (h, w), as TF `resize_image_with_crop_or_pad` (Lucid)."""
  h: int
  w: int
  fixed = True
  branches = 0

  def draw(self, key):
    return jnp.zeros((), jnp.int32)

  def out_size(self, hw):
    return self.h, self.w

  def __call__(self, x, draw=None):
    for axis, target in ((1, self.h), (2, self.w)):
      n = x.shape[axis]
      if n > target:
        x = lax.slice_in_dim(x, (n - target) // 2, (n - target) // 2 + target, axis=axis)
      elif n < target:
        p = [(0, 0)] * 4
        p[axis] = ((target - n) // 2, target - n - (target - n) // 2)
        x = jnp.pad(x, p)
    return x


@dataclasses.dataclass(frozen=True)
class ResizeTo:
  """Bilinear resize to a fixed (h, w): Lucent's final `Upsample(224, align_corners=True)`.

  With `only_if_smaller` (Lucent) the resize applies only when the input is smaller than the
  target; the input size is static so this is decided at trace time.
  """
  h: int
  w: int
  align_corners: bool = True
  only_if_smaller: bool = False
  fixed = True
  branches = 0

  def draw(self, key):
    return jnp.zeros((), jnp.int32)

  def out_size(self, hw):
    if self.only_if_smaller and hw[0] >= self.h and hw[1] >= self.w:
      return tuple(hw)
    return self.h, self.w

  def __call__(self, x, draw=None):
    target = self.out_size(x.shape[1:3])
    if tuple(x.shape[1:3]) == tuple(target):
      return x
    return resize_bilinear(x, target, self.align_corners)


# --- pipeline --------------------------------------------------------------------------------------

Transform = Any


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """An ordered composition of transforms with one random draw per transform per step."""
  transforms: tuple = ()

  def draw(self, key: jax.Array) -> tuple:
    """Draws for every transform (a tuple of int32 arrays) from one key."""
    if not self.transforms:
      return ()
    keys = jax.random.split(key, len(self.transforms))
    return tuple(t.draw(k) for t, k in zip(self.transforms, keys))

  def run(self, x: jax.Array, draws: Sequence, tail: Callable = lambda y: y):
    """Apply the transforms to `x` with `draws`, then `tail` (e.g. model + objective).

    A `RandomScale` becomes a `lax.switch` over its scales; see the module docstring.
    """
    return self._run(x, tuple(draws), 0, len(self.transforms), tail)

  def __call__(self, x, draws):
    return self.run(x, draws)

  def value_and_grad(self, tail: Callable, x: jax.Array, draws: Sequence, *args):
    """`((value, aux), (dx, *dargs))` of `tail(self.run(x, draws), *args)` = (value, aux).

    The same numbers as `jax.value_and_grad(..., argnums=(0, 1, ...), has_aux=True)` of
    `run`, computed so that a `RandomScale` whose branches reach the end of the step holds the
    whole forward *and* backward pass of each scale inside its `lax.switch` branch: only the
    drawn branch runs, and the backward pass does not carry every other branch's residuals
    (differentiating through a `lax.switch` makes each branch return the union of all
    branches' residuals, zero-filled, which for the network's activations costs more than
    the network itself). Transforms before that scale are differentiated normally (`jax.vjp`).
    """
    draws = tuple(draws)
    n = len(self.transforms)
    split = next((i for i, t in enumerate(self.transforms) if t.branches
                  and not any(u.fixed for u in self.transforms[i + 1:])), None)

    def whole(y, *a):
      return tail(self._run(y, draws, 0, n, lambda z: z), *a)

    argnums = tuple(range(1 + len(args)))
    if split is None:
      return jax.value_and_grad(whole, argnums=argnums, has_aux=True)(x, *args)
    t = self.transforms[split]
    y, back = jax.vjp(lambda v: self._run(v, draws, 0, split, lambda z: z), x)

    def branch(k):
      def rest(v, *a):
        return tail(self._run(t.apply_static(v, k), draws, split + 1, n, lambda z: z), *a)
      return lambda ops: jax.value_and_grad(rest, argnums=argnums, has_aux=True)(*ops)

    out, grads = lax.switch(jnp.asarray(draws[split], jnp.int32),
                            [branch(k) for k in range(t.branches)], (y, *args))
    return out, (back(grads[0])[0], *grads[1:])

  def _run(self, x, draws, i, stop, tail):
    if i == stop:
      return tail(x)
    t = self.transforms[i]
    if not t.branches:
      return self._run(t(x, draws[i]), draws, i + 1, stop, tail)
    j = next((k for k in range(i + 1, stop) if self.transforms[k].fixed), None)
    if j is not None:
      branches = [lambda y, k=k: self._run(t.apply_static(y, k), draws, i + 1, j + 1, lambda z: z)
                  for k in range(t.branches)]
      y = lax.switch(jnp.asarray(draws[i], jnp.int32), branches, x)
      return self._run(y, draws, j + 1, stop, tail)
    branches = [lambda y, k=k: self._run(t.apply_static(y, k), draws, i + 1, stop, tail)
                for k in range(t.branches)]
    return lax.switch(jnp.asarray(draws[i], jnp.int32), branches, x)

  def output_sizes(self, hw: tuple[int, int]) -> set[tuple[int, int]]:
    """Every possible output size for input size `hw` (one per scale branch)."""
    sizes = {tuple(hw)}
    for t in self.transforms:
      new = set()
      for s in sizes:
        if t.branches:
          new.update(t.out_size(s, k) for k in range(t.branches))
        else:
          new.add(tuple(t.out_size(s)))
      sizes = new
    return sizes


# --- standard sets ---------------------------------------------------------------------------------

def pad(width: int, mode: str = "constant", value: float = 0.5) -> Pad:
  """`Pad` transform."""
  return Pad(width, mode, value)


def jitter(d: int, mode: str = "lucid", legacy_kornia: bool = False) -> Jitter:
  """`Jitter` transform."""
  return Jitter(d, _check_mode(mode), legacy_kornia)


def random_scale(scales: Sequence[float], mode: str = "lucid") -> RandomScale:
  """`RandomScale` transform."""
  return RandomScale(tuple(float(s) for s in scales), _check_mode(mode))


def random_rotate(angles: Sequence[float], mode: str = "lucid") -> RandomRotate:
  """`RandomRotate` transform."""
  return RandomRotate(tuple(float(a) for a in angles), _check_mode(mode))


def crop_or_pad_to(h: int, w: int) -> CropOrPadTo:
  """`CropOrPadTo` transform."""
  return CropOrPadTo(h, w)


STANDARD_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
STANDARD_ANGLES = tuple(range(-10, 11)) + 5 * (0,)


def standard_transforms(mode: str = "lucid", upsample: int | None = 224) -> Pipeline:
  """Lucid/Lucent `standard_transforms`: pad 12 (0.5), jitter 8, scale 0.9..1.1, rotate ±10, jitter 4.

  In "lucent" mode the pipeline ends with Lucent's align-corners upsample to `upsample` px
  (applied only when the image is smaller, as Lucent does).
  """
  _check_mode(mode)
  ts = [pad(12), jitter(8, mode), random_scale(STANDARD_SCALES, mode),
        random_rotate(STANDARD_ANGLES, mode), jitter(4, mode)]
  if mode == "lucent" and upsample:
    ts.append(ResizeTo(upsample, upsample, True, only_if_smaller=True))
  return Pipeline(tuple(ts))


def from_spec(spec: Sequence, mode: str = "lucid") -> Pipeline:
  """Build a `Pipeline` from a config spec: a sequence of (name, arg) pairs.

  Names: "pad" (width or (width, mode, value)), "jitter" (d), "scale" (scales), "rotate"
  (angles), "crop_or_pad_to" (size), "upsample" (size, align corners, Lucent: only if smaller).
  """
  ts = []
  for item in spec:
    name, arg = item[0], item[1]
    if name == "pad":
      ts.append(pad(*arg) if isinstance(arg, (tuple, list)) else pad(arg))
    elif name == "jitter":
      ts.append(jitter(int(arg), mode))
    elif name == "scale":
      ts.append(random_scale(arg, mode))
    elif name == "rotate":
      ts.append(random_rotate(arg, mode))
    elif name == "crop_or_pad_to":
      ts.append(crop_or_pad_to(int(arg), int(arg)))
    elif name == "upsample":
      ts.append(ResizeTo(int(arg), int(arg), True, only_if_smaller=True))
    else:
      raise ValueError(f"unknown transform {name!r}; use pad, jitter, scale, rotate, "
                       f"crop_or_pad_to, upsample")
  return Pipeline(tuple(ts))
