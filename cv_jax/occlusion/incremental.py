"""Exact incremental forward pass for occlusions ("dirty windows").

An occluder changes only a square of the input. Through each layer the changed region grows by the
kernel's reach and shrinks with its stride, so for the early, expensive layers only a window of
the map differs from the un-occluded image's map. Here every layer is computed only on that
window (per occluded copy, at a dynamic offset, with a static size), reading the un-occluded
("base") map for the surrounding context and the layer's own padding rule (zeros for
convolutions, -inf for max-pooling, zero-padded bottleneck outputs inside inception blocks).
Windows that would cover the whole map become the whole map. The result equals the plain
forward pass up to float rounding (tests compare both against direct loops).

For 224 px, a 90 px occluder and BVLC GoogLeNet: conv2d0 is computed on 48x48 of 112x112
outputs, conv2d2 on 27x27 of 56x56, mixed3a on 19x19 of 28x28 and mixed3b on 23x23 of 28x28;
from maxpool4 on windows are full (a window over `MAX_WINDOW_FRACTION` of its map is widened).
Windowed convolutions are run as padded convolutions cropped to the outputs that read no padding:
XLA's CPU VALID convolutions are ~2.5x slower than padded ones of the same output size. Supported targets: block concats (`mixedXX_pre_relu`,
`mixedXX`) of both GoogLeNet variants; other layers use the plain batched forward.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from cv_jax.models import layers as L
from cv_jax.models.spec import CAFFE_STEM_PAD


class Win(NamedTuple):
  """Per-copy window of a map: values (B, mr, mc, C) whose top-left is at off (B, 2)."""
  val: jax.Array
  off: jax.Array


def supported(model, layer: str) -> bool:
  """Whether `layer` is a target of the incremental forward pass."""
  base = layer[: -len("_pre_relu")] if layer.endswith("_pre_relu") else layer
  return base in model.spec.blocks


def _compose(base: jax.Array, win: Win, start: jax.Array, size: tuple[int, int],
             fill: float) -> jax.Array:
  """(B, size, C) slabs at unpadded coordinates `start` (B, 2): the window's values where it
  covers them, the base map elsewhere, `fill` outside the map.

  One copy at a time (`lax.map`), so every offset is a scalar: the slab is a plain dynamic
  slice of the padded base map, and the window is moved to its place in the slab by a cyclic
  shift (`_shift`), whose wrapped-around cells fall where the window does not reach and are
  masked. Batched over the copies, the same slices and shifts became XLA gathers, which XLA CPU
  ran at ~0.1 GB/s (~10 % of the occlusion program). Pure data movement: exact.
  """
  c = base.shape[-1]
  lr, lc = size
  nr, nc = win.val.shape[1:3]
  base_p = jnp.pad(base, ((lr, lr), (lc, lc), (0, 0)), constant_values=fill)
  rows, cols = jnp.arange(lr)[:, None], jnp.arange(lc)[None, :]

  def one(args):
    val, off, st = args
    slab = lax.dynamic_slice(base_p, (st[0] + lr, st[1] + lc, 0), (lr, lc, c))
    rel = off - st  # the window's top-left in slab coordinates (any integer)
    moved = _shift(_shift(val, rel[0], lr, 0), rel[1], lc, 1)
    inside = (rows >= rel[0]) & (rows < rel[0] + nr) & (cols >= rel[1]) & (cols < rel[1] + nc)
    return jnp.where(inside[..., None], moved, slab)
  return lax.map(one, (win.val, win.off, start))


def _shift(x: jax.Array, by: jax.Array, out: int, axis: int) -> jax.Array:
  """y[i] = x[(i - by) mod n] along `axis` for i < `out`, with x zero-padded to n = max(len, out):
  correct wherever 0 <= i - by < len(x)."""
  n = max(x.shape[axis], out)
  if n > x.shape[axis]:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, n - x.shape[axis])
    x = jnp.pad(x, pad)
  twice = jnp.concatenate([x, x], axis=axis)
  first = jnp.mod(-by, n)
  starts = [0] * x.ndim
  starts[axis] = first
  sizes = list(x.shape)
  sizes[axis] = out
  return lax.dynamic_slice(twice, starts, sizes)


def _in_map(start, size, hw):
  """(B, size..., 1) mask of slab cells inside the map."""
  tr = jnp.arange(size[0])[None, :] + start[:, :1]
  tc = jnp.arange(size[1])[None, :] + start[:, 1:]
  return (((tr >= 0) & (tr < hw[0]))[:, :, None] & ((tc >= 0) & (tc < hw[1]))[:, None, :])[..., None]


# Windows covering more than this fraction of a map are widened to the whole map: on CPU, the
# windowed layer's gathers and larger VALID-window overheads cost about what they save.
MAX_WINDOW_FRACTION = 0.75


def _out_window(win: Win, k: int, s: int, lo: tuple[int, int], out_hw: tuple[int, int]):
  """Static output window size and its dynamic start for a k x k, stride-s op."""
  m, o = [], []
  for ax in range(2):
    n = win.val.shape[1 + ax]
    m.append(min((n + k - 2) // s + 1, out_hw[ax]))
  if m[0] * m[1] > MAX_WINDOW_FRACTION * out_hw[0] * out_hw[1]:
    m = list(out_hw)
  for ax in range(2):
    ideal = -((-(win.off[:, ax] + lo[ax] - k + 1)) // s)
    o.append(jnp.clip(ideal, 0, out_hw[ax] - m[ax]))
  return tuple(m), jnp.stack(o, axis=1)


def _win_op(base_in, win: Win, k, s, pads, fill, op):
  """Apply a VALID k x k stride-s `op` to the slab under the output window."""
  h, w = base_in.shape[:2]
  lo = (pads[0][0], pads[1][0])
  out_hw = tuple((sz + p[0] + p[1] - k) // s + 1 for sz, p in zip((h, w), pads))
  m, o = _out_window(win, k, s, lo, out_hw)
  start = o * s - jnp.asarray(lo)
  size = ((m[0] - 1) * s + k, (m[1] - 1) * s + k)
  return Win(op(_compose(base_in, win, start, size, fill)), o)


def _conv_valid(x, p, s=1):
  """VALID convolution, computed as a zero-padded one cropped to the outputs that read no padding.

  Same values; XLA's CPU convolutions are ~2.5x faster with padding than VALID (measured).
  """
  k = p["kernel"].shape[0]
  if k == 1:
    return L.conv2d(x, p["kernel"], p["bias"], s, "VALID")
  q = -(-(k // 2) // s)
  m = [(x.shape[1 + a] - k) // s + 1 for a in range(2)]
  y = L.conv2d(x, p["kernel"], p["bias"], s, [(q * s, k // 2), (q * s, k // 2)])
  return y[:, q:q + m[0], q:q + m[1]]


def _maxpool_valid(x, k, s):
  return L.max_pool(x, k, s, ((0, 0), (0, 0)))  # shifted views where faster than reduce_window


class Plan:
  """The static layer sequence from the image to a block concat, for one model and image size."""

  def __init__(self, model, layer: str, hw: tuple[int, int]):
    if not supported(model, layer):
      raise ValueError(f"incremental occlusion supports block concats, not {layer!r}")
    self.model = model
    self.spec = model.spec
    self.layer = layer
    self.block = layer[: -len("_pre_relu")] if layer.endswith("_pre_relu") else layer
    self.pre_relu = layer.endswith("_pre_relu")
    self.caffe = self.spec.padding == "caffe"
    self.lrn = self.spec.lrn[model.lrn]
    self.hw = hw

  def _conv_pads(self, name, k, s, hw):
    if self.caffe:
      p = CAFFE_STEM_PAD.get(name, k // 2)
      return ((p, p), (p, p))
    return tuple(L.same_padding(sz, k, s) for sz in hw)

  def _pool_pads(self, x_hw, s, pad=0):
    mode = "caffe" if self.caffe else "same"
    fake = jax.ShapeDtypeStruct((1, *x_hw, 1), jnp.float32)
    return tuple(tuple(p) for p in L.pool_padding(fake, 3, s, mode, pad))

  def _steps(self):
    """The network's steps (`NetSpec.ops`) up to the target block, as [(kind, arg)] with kind
    in conv/relu/pool/lrn/block (a conv op becomes a conv step and a relu step)."""
    st = []
    for op in self.spec.ops():
      if op.kind == "conv":
        st += [("conv", (op.name, op.kernel, op.stride)), ("relu", None)]
      elif op.kind == "maxpool":
        st.append(("pool", op.stride))
      elif op.kind == "lrn":
        st.append(("lrn", None))
      elif op.kind == "block":
        st.append(("block", op.name))
        if op.name == self.block:
          return st
      else:
        raise ValueError(f"no incremental step for a {op.kind!r} before {self.block}")
    raise ValueError(f"{self.block} is not a block of {self.spec.name}")

  # -- full maps (the base image) --

  def _full(self, params, kind, arg, x):
    hw = x.shape[1:3]
    if kind == "conv":
      name, k, s = arg
      pads = self._conv_pads(name, k, s, hw)
      return L.conv2d(x, params[name]["kernel"], params[name]["bias"], s, list(pads))
    if kind == "relu":
      return jax.nn.relu(x)
    if kind == "lrn":
      return L.lrn(x, **vars(self.lrn))
    if kind == "pool":
      return L.max_pool(x, 3, arg, self._pool_pads(hw, arg))
    if kind == "block":
      ones = Win(x, jnp.zeros((x.shape[0], 2), jnp.int32))
      return self._block(params, arg, x[0], ones, full=True)
    raise ValueError(kind)

  def base_maps(self, params, x_pre):
    """Input maps of every step for the (1, H, W, 3) preprocessed base image, and the output."""
    maps = []
    x = x_pre
    for kind, arg in self._steps():
      maps.append(x[0])
      y = self._full(params, kind, arg, x)
      x = y[1] if kind == "block" else y
    return maps

  # -- windows --

  def _block(self, params, b, base_in, win: Win, full=False):
    """Windowed inception block; returns (pre-ReLU concat window, post-ReLU window) as Wins,
    or the (1, H, W, C) arrays when `full`."""
    h, w = base_in.shape[:2]
    if full:
      m, o = (h, w), jnp.zeros((win.val.shape[0], 2), jnp.int32)
    else:
      m, o = _out_window(win, 5, 1, (2, 2), (h, w))
    start = o - 2
    size = (m[0] + 4, m[1] + 4)
    slab = win.val if full else None
    if full:
      slab = jnp.pad(win.val, ((0, 0), (2, 2), (2, 2), (0, 0)))
    else:
      slab = _compose(base_in, win, start, size, 0.0)
    inside = _in_map(start, size, (h, w))
    p = lambda n: params[f"{b}_{n}"]
    s1 = slab[:, 2:-2, 2:-2]
    s3 = slab[:, 1:-1, 1:-1]
    p1 = _conv_valid(s1, p("1x1"))
    b3 = jnp.where(inside[:, 1:-1, 1:-1], jax.nn.relu(_conv_valid(s3, p("3x3_bottleneck"))), 0.0)
    p3 = _conv_valid(b3, p("3x3"))
    b5 = jnp.where(inside, jax.nn.relu(_conv_valid(slab, p("5x5_bottleneck"))), 0.0)
    p5 = _conv_valid(b5, p("5x5"))
    sp = jnp.where(inside[:, 1:-1, 1:-1], s3, -jnp.inf)
    pp = _conv_valid(_maxpool_valid(sp, 3, 1), p("pool_reduce"))
    pre = jnp.concatenate([p1, p3, p5, pp], axis=-1)
    if full:
      return pre, jax.nn.relu(pre)
    return Win(pre, o), Win(jax.nn.relu(pre), o)

  def windows(self, params, maps, win: Win):
    """Run the steps on the per-copy windows; return the target layer's window."""
    steps = self._steps()
    for i, ((kind, arg), base_in) in enumerate(zip(steps, maps)):
      if kind == "conv":
        name, k, s = arg
        pads = self._conv_pads(name, k, s, base_in.shape[:2])
        win = _win_op(base_in, win, k, s, pads, 0.0, lambda x: _conv_valid(x, params[name], s))
      elif kind == "relu":
        win = Win(jax.nn.relu(win.val), win.off)
      elif kind == "lrn":
        win = Win(L.lrn(win.val, **vars(self.lrn)), win.off)
      elif kind == "pool":
        pads = self._pool_pads(base_in.shape[:2], arg)
        win = _win_op(base_in, win, 3, arg, pads, -jnp.inf, lambda x: _maxpool_valid(x, 3, arg))
      elif kind == "block":
        pre, post = self._block(params, arg, base_in, win)
        win = pre if (i == len(steps) - 1 and self.pre_relu) else post
    return win

  def target_base(self, params, maps):
    """The base image's target map (H, W, C)."""
    kind, arg = self._steps()[-1]
    pre, post = self._full(params, kind, arg, maps[-1][None])
    return (pre if self.pre_relu else post)[0]


def spatial_means(plan: Plan, params, maps, target, x_pre_occ, win_off):
  """Spatial means (B, C) of the target layer for occluded copies.

  maps/target: `plan.base_maps` and `plan.target_base` of the preprocessed base image;
  x_pre_occ: (B, n, n, 3) preprocessed occluded squares whose top-left corners are win_off (B, 2).
  """
  win = plan.windows(params, maps, Win(x_pre_occ, win_off))
  h, w = target.shape[:2]
  # mean = base mean + sum(window - base under the window) / (H W)
  under = jax.vmap(lambda o: lax.dynamic_slice(target, (o[0], o[1], 0), win.val.shape[1:]))(win.off)
  return jnp.mean(target, axis=(0, 1))[None] + jnp.sum(win.val - under, axis=(1, 2)) / (h * w)
