"""Building blocks shared by the networks: convolution, pooling, LRN and ReLU variants.

Everything here is a pure function on NHWC float32 arrays. Padding conventions are explicit
because the two networks differ: Lucid's InceptionV1 uses TensorFlow "SAME" padding at every
input size, BVLC GoogLeNet uses Caffe's symmetric convolution padding and ceil-mode pooling.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = Sequence[tuple[int, int]]

RELU_MODES = ("standard", "lucent", "lucid")
LUCID_REDIRECT_STEPS = 16  # Lucid redirects ReLU gradients while global_step <= 16.


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow "SAME" padding (low, high) for one spatial axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def caffe_pool_padding(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int]:
  """Padding (low, high) that makes a VALID window reproduce Caffe's ceil-mode pooling.

  Caffe's output size is ceil((size + 2 pad - kernel) / stride) + 1, minus one if the last
  window would start inside the bottom/right padding. The extra cells on the high side are
  filled with the pooling identity, exactly like Caffe clipping its windows to the image.
  """
  out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
  if pad > 0 and (out - 1) * stride >= size + pad:
    out -= 1
  high = (out - 1) * stride + kernel - size - pad
  return pad, max(high, 0)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int,
           padding: str | Padding) -> jax.Array:
  """2-D convolution, NHWC input, HWIO kernel; `padding` is "SAME", "VALID" or explicit pairs.

  The input gradient is computed by `_conv_input_grad` as an ordinary (forward-style, HWIO)
  convolution of the cotangent with the flipped, transposed kernel; for strides above 1 as one
  stride-1 convolution whose output channels hold the stride x stride phases of the input,
  interleaved afterwards (no zero-dilated cotangent). XLA CPU runs these through the same fast
  convolution path as the forward pass; the transposed convolution that `lax`'s own gradient
  emits (kernel in OIHW-like order, lhs dilation for strides) takes a slower path there, about
  5x the forward convolution's time. The weight gradient is `lax`'s own.
  """
  if padding == "SAME":
    padding = [same_padding(x.shape[i + 1], kernel.shape[i], stride) for i in range(2)]
  elif padding == "VALID":
    padding = [(0, 0), (0, 0)]
  pads = ((int(padding[0][0]), int(padding[0][1])), (int(padding[1][0]), int(padding[1][1])))
  if kernel.shape[:2] == (1, 1) and int(stride) == 1 and pads == ((0, 0), (0, 0)):
    return _pointwise(x, kernel) + bias
  return _conv(x, kernel, int(stride), pads) + bias


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 1x1, stride-1, unpadded convolution as one matrix product over all pixels.

  XLA CPU runs the product through its matrix-multiply path: 1.3-2.5x the convolution path's
  speed on one core and, unlike it, parallel over cores (2-4x at two). Autodiff of a product
  is products, so the input gradient takes the same path.
  """
  ci, co = kernel.shape[2:]
  y = x.reshape(-1, ci) @ kernel.reshape(ci, co).astype(x.dtype)
  return y.reshape(*x.shape[:-1], co)


_DN = ("NHWC", "HWIO", "NHWC")


def _conv_plain(x, kernel, stride, pads):
  return lax.conv_general_dilated(x, kernel, window_strides=(stride, stride), padding=pads,
                                  dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, stride, pads):
  return _conv_plain(x, kernel, stride, pads)


def _conv_fwd(x, kernel, stride, pads):
  return _conv_plain(x, kernel, stride, pads), (x, kernel)


def _conv_bwd(stride, pads, res, g):
  x, kernel = res
  dx = _conv_input_grad(g, kernel, x.shape, stride, pads)
  _, kernel_vjp = jax.vjp(lambda k: _conv_plain(x, k, stride, pads), kernel)
  return dx, kernel_vjp(g)[0]  # unused (and removed by XLA) when only images are differentiated


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_input_grad(g: jax.Array, kernel: jax.Array, x_shape, stride: int,
                     pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """d(sum(conv(x, kernel) * g)) / dx for an NHWC `x` of shape `x_shape`.

  With n + pad_low = stride * q + r (per axis), dx[n] = sum_t g[q - t] * kernel[stride * t + r]:
  for each phase r a stride-1 correlation of g with the phase's sub-kernel, flipped. All phases
  are output channels of one convolution (kernel zero-padded to a multiple of the stride), and a
  depth-to-space reshape interleaves them; the low padding of the forward pass is then cropped.
  """
  kh, kw, ci, co = kernel.shape
  s = stride
  _, nh, nw, _ = x_shape
  _, mh, mw, _ = g.shape
  (plh, phh), (plw, phw) = pads
  if s == 1 and min(kh - 1 - plh, kh - 1 - phh, kw - 1 - plw, kw - 1 - phw) >= 0:
    wt = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    return lax.conv_general_dilated(
        g, wt, (1, 1), ((kh - 1 - plh, kh - 1 - phh), (kw - 1 - plw, kw - 1 - phw)),
        dimension_numbers=_DN)
  th, tw = -(-kh // s), -(-kw // s)
  w = jnp.pad(kernel, ((0, th * s - kh), (0, tw * s - kw), (0, 0), (0, 0)))
  w = w.reshape(th, s, tw, s, ci, co)[::-1, :, ::-1]      # [t_y, r_y, t_x, r_x, ci, co], t flipped
  w = w.transpose(0, 2, 5, 1, 3, 4).reshape(th, tw, co, s * s * ci)
  qh, qw = -(-(nh + plh) // s), -(-(nw + plw) // s)      # phases rows/cols needed
  z = lax.conv_general_dilated(
      g, w, (1, 1), ((th - 1, max(qh - mh, 0)), (tw - 1, max(qw - mw, 0))),
      dimension_numbers=_DN)[:, :qh, :qw]
  b = g.shape[0]
  d = z.reshape(b, qh, qw, s, s, ci).transpose(0, 1, 3, 2, 4, 5).reshape(b, qh * s, qw * s, ci)
  return d[:, plh:plh + nh, plw:plw + nw]


def max_pool(x: jax.Array, kernel: int, stride: int, padding: Padding) -> jax.Array:
  """Max pooling with explicit (low, high) padding per spatial axis, padded with -inf.

  The gradient goes, in each window, to the first maximal cell in row-major window order
  (PyTorch's and XLA's rule for ties), computed with dense elementwise ops (`_max_pool_bwd`)
  instead of XLA's select-and-scatter, which XLA CPU lowers to an index-carrying reduce-window
  plus a scatter, several times slower than the pooling itself.
  """
  pads = ((int(padding[0][0]), int(padding[0][1])), (int(padding[1][0]), int(padding[1][1])))
  return _max_pool(x, int(kernel), int(stride), pads)


def _max_pool_plain(x, kernel, stride, pads):
  # XLA CPU's 2-D reduce-window was the slowest form at every shape measured. Unpadded pools:
  # the maximum of the k*k strided views, one fused pass (2-4x the 2-D reduce-window: 9 x 61 x
  # 61 x 192, stride 2: 12.0 -> 3.0 ms on one core). Padded ones (every stride-1 pool, and
  # stride-2 pools whose ceil-mode or SAME padding is not zero): two 1-D reduce-windows, rows
  # then columns (the views read a padded copy, which made them slower: 4 x 112 x 112 x 64:
  # 2-D 5.8, views 3.4, separable 1.8 ms). Bitwise equal either way (a maximum is exact).
  if pads == ((0, 0), (0, 0)):
    n, h, w, c = x.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    views = [lax.slice(x, (0, dy, dx, 0),
                       (n, dy + stride * (ho - 1) + 1, dx + stride * (wo - 1) + 1, c),
                       (1, stride, stride, 1))
             for dy in range(kernel) for dx in range(kernel)]
    return functools.reduce(jnp.maximum, views)
  rows = lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, 1, 1), (1, stride, 1, 1),
                           ((0, 0), pads[0], (0, 0), (0, 0)))
  return lax.reduce_window(rows, -jnp.inf, lax.max, (1, 1, kernel, 1), (1, 1, stride, 1),
                           ((0, 0), (0, 0), pads[1], (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, kernel, stride, pads):
  return _max_pool_plain(x, kernel, stride, pads)


def _max_pool_fwd(x, kernel, stride, pads):
  y = _max_pool_plain(x, kernel, stride, pads)
  return y, (x, y)


def _max_pool_bwd(kernel, stride, pads, res, g):
  """Route each output cotangent to the first maximal input of its window.

  One pass over the k*k strided views of the padded input finds, per output cell o, the first
  window offset d = (dy, dx) (row-major) whose input equals the pooled maximum; input cell p
  then receives g[o] from every window o with p + pad = stride * o + d and first[o] = d
  (`_route_shifted`). No scatter and no select-and-scatter (XLA CPU lowers that to an
  index-carrying reduce-window plus a scatter, several times slower), and no interleave of
  per-phase results (a concatenate fusion that XLA CPU ran at several times the cost of the
  shifted form inside the feature-visualisation step).
  """
  x, y = res
  n, h, w, c = x.shape
  (pt, pb), (pl, pr) = pads
  s, k = stride, kernel
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  ho, wo = y.shape[1:3]
  offsets = jnp.int8 if k * k < 127 else jnp.int32  # int8: less memory traffic when routing
  first = jnp.full(y.shape, k * k, offsets)
  for d in reversed(range(k * k)):
    dy, dx = divmod(d, k)
    view = lax.slice(xp, (0, dy, dx, 0), (n, dy + s * (ho - 1) + 1, dx + s * (wo - 1) + 1, c),
                     (1, s, s, 1))
    first = jnp.where(view == y, jnp.asarray(d, offsets), first)
  return (_route_shifted(first, g, x.shape, k, s, pads),)


def _route_shifted(first, g, x_shape, k, s, pads):
  """Spread `first` and `g` onto the input grid once (`lax.pad`, interior padding s - 1, -1 in
  `first`'s gaps); input cell p then reads both at p + pad - d for each offset d: k*k shifted
  slices of two arrays and a sum, one fused elementwise pass."""
  n, h, w, c = x_shape
  (pt, _), (pl, _) = pads
  ho, wo = g.shape[1:3]
  lh, lw = max(0, k - 1 - pt), max(0, k - 1 - pl)
  hh, hw = max(0, h + pt - s * (ho - 1) - 1), max(0, w + pl - s * (wo - 1) - 1)
  spread = ((0, 0, 0), (lh, hh, s - 1), (lw, hw, s - 1), (0, 0, 0))
  fs = lax.pad(first, jnp.asarray(-1, first.dtype), spread)
  gs = lax.pad(g, jnp.zeros((), g.dtype), spread)
  out = None
  for d in range(k * k):
    dy, dx = divmod(d, k)
    start = (0, pt - dy + lh, pl - dx + lw, 0)
    limit = (n, start[1] + h, start[2] + w, c)
    term = jnp.where(lax.slice(fs, start, limit) == d, lax.slice(gs, start, limit),
                     jnp.zeros((), g.dtype))
    out = term if out is None else out + term
  return out


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def pool_padding(x: jax.Array, kernel: int, stride: int, mode: str, pad: int = 0) -> Padding:
  """Per-axis padding for a pooling op in `mode` "same" (TF) or "caffe" (ceil mode)."""
  sizes = x.shape[1:3]
  if mode == "same":
    return [same_padding(s, kernel, stride) for s in sizes]
  if mode == "caffe":
    return [caffe_pool_padding(s, kernel, stride, pad) for s in sizes]
  raise ValueError(f"unknown pooling mode {mode!r}")


def avg_pool_valid(x: jax.Array, kernel: int, stride: int) -> jax.Array:
  """Average pooling over VALID windows (no padding, so every window has kernel**2 cells)."""
  s = lax.reduce_window(x, 0.0, lax.add, (1, kernel, kernel, 1), (1, stride, stride, 1), "VALID")
  return s / (kernel * kernel)


def lrn(x: jax.Array, size: int, alpha: float, beta: float, bias: float) -> jax.Array:
  """Local response normalisation across channels (NHWC).

  y_c = x_c / (bias + alpha * sum_{|c'-c| <= size//2} x_{c'}^2) ** beta, with the window
  truncated at the channel edges. `alpha` is the per-sum coefficient: TF's alpha as is,
  PyTorch's and Caffe's alpha divided by their `size`.

  The gradient is the closed form (`_lrn_bwd`): one more channel-window sum, reusing the
  forward pass's power (autodiff recomputes it). The power is exp(-beta log d): within float32
  round-off of `pow` (max relative error against float64 3.6e-8 vs 3.1e-8 on BVLC's range),
  and about 5x faster on XLA CPU, whose `pow` is not vectorised. (An rsqrt form, error 1.6e-7,
  moved the BVLC input gradient 2e-5 away from PyTorch's, over the equivalence tests' 1e-5.)
  """
  return _lrn(x, int(size), float(alpha), float(beta), float(bias))


def _window_sum(v: jax.Array, size: int, low: int) -> jax.Array:
  """Sum over the channel window [c - low, c - low + size) (zero outside the channels)."""
  return lax.reduce_window(v, 0.0, lax.add, (1, 1, 1, size), (1, 1, 1, 1),
                           ((0, 0), (0, 0), (0, 0), (low, size - 1 - low)))


def _lrn_parts(x, size, alpha, beta, bias):
  d = bias + alpha * _window_sum(x * x, size, size // 2)
  p = jnp.exp(-beta * jnp.log(d))  # d ** -beta: XLA CPU's pow is ~5x slower, same accuracy
  return x * p, d, p


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn(x, size, alpha, beta, bias):
  return _lrn_parts(x, size, alpha, beta, bias)[0]


def _lrn_fwd(x, size, alpha, beta, bias):
  y, d, p = _lrn_parts(x, size, alpha, beta, bias)
  return y, (x, d, p)


def _lrn_bwd(size, alpha, beta, bias, res, g):
  """dx_j = g_j p_j - 2 alpha beta x_j sum_{c: j in window(c)} g_c x_c p_c / d_c."""
  x, d, p = res
  t = g * x * p / d
  return (g * p - (2.0 * alpha * beta) * x * _window_sum(t, size, size - 1 - size // 2),)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


# --- ReLU variants ------------------------------------------------------------------------------

@jax.custom_vjp
def relu_lucent(x: jax.Array) -> jax.Array:
  """ReLU whose backward pass leaks 0.1 of the gradient where x < 0 (Lucent's RedirectedReLU)."""
  return jnp.maximum(x, 0.0)


def _relu_lucent_fwd(x):
  return jnp.maximum(x, 0.0), x


def _relu_lucent_bwd(x, g):
  return (jnp.where(x < 0, 0.1 * g, g),)


relu_lucent.defvjp(_relu_lucent_fwd, _relu_lucent_bwd)


@jax.custom_vjp
def relu_lucid(x: jax.Array, redirect: jax.Array) -> jax.Array:
  """ReLU with Lucid's `redirected_relu_grad` backward pass.

  The cotangent `g` is that of the loss being *minimised* (Lucid minimises -objective).
  While `redirect` is true, a batch element whose ordinary ReLU gradient is all zero at this
  op receives `g` except where x < 0 and g > 0 (gradients that would push a dead unit further
  down stay blocked). Otherwise the gradient is `where(x < 0, 0, g)`.
  """
  del redirect
  return jnp.maximum(x, 0.0)


def _relu_lucid_fwd(x, redirect):
  return jnp.maximum(x, 0.0), (x, redirect)


def _relu_lucid_bwd(res, g):
  x, redirect = res
  relu_grad = jnp.where(x < 0, 0.0, g)
  redirected = jnp.where((x < 0) & (g > 0), 0.0, g)
  axes = tuple(range(1, g.ndim))
  blocked = jnp.sum(relu_grad * relu_grad, axis=axes, keepdims=True) == 0
  use_redirect = jnp.logical_and(blocked, redirect)
  return jnp.where(use_redirect, redirected, relu_grad), None


relu_lucid.defvjp(_relu_lucid_fwd, _relu_lucid_bwd)


def relu(x: jax.Array, mode: str = "standard", step: jax.Array | int | None = None) -> jax.Array:
  """ReLU with a selectable gradient: "standard", "lucent" (0.1 leak) or "lucid" (redirected).

  For "lucid", `step` is the optimisation step (Lucid's global_step); the redirection acts only
  while step <= 16. Without a step it always acts.
  """
  if mode == "standard":
    return jax.nn.relu(x)
  if mode == "lucent":
    return relu_lucent(x)
  if mode == "lucid":
    redirect = jnp.asarray(True) if step is None else jnp.asarray(step) <= LUCID_REDIRECT_STEPS
    return relu_lucid(x, redirect)
  raise ValueError(f"unknown relu mode {mode!r}; choose one of {RELU_MODES}")
