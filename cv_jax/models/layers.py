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
  """2-D convolution, NHWC input, HWIO kernel; `padding` is "SAME", "VALID" or explicit pairs."""
  if padding == "SAME":
    padding = [same_padding(x.shape[i + 1], kernel.shape[i], stride) for i in range(2)]
  y = lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding=padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + bias


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
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, kernel, 1),
                           (1, stride, stride, 1), ((0, 0), pads[0], pads[1], (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, kernel, stride, pads):
  return _max_pool_plain(x, kernel, stride, pads)


def _max_pool_fwd(x, kernel, stride, pads):
  y = _max_pool_plain(x, kernel, stride, pads)
  return y, (x, y)


def _max_pool_bwd(kernel, stride, pads, res, g):
  """Route each output cotangent to the first maximal input of its window.

  One pass over the k*k strided views of the padded input finds, per output cell, the first
  window offset d = (dy, dx) (row-major) whose input equals the pooled maximum. Input cell
  p = stride*o + d then receives g[o]. Written per input phase r = p mod stride: with
  d = stride*a + r, cell q of phase r sums g[q - a] over the offsets of that phase (plain
  shifts, no scatter); the phases are interleaved back by a reshape.
  """
  x, y = res
  n, h, w, c = x.shape
  (pt, pb), (pl, pr) = pads
  s, k = stride, kernel
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  hp, wp = xp.shape[1:3]
  ho, wo = y.shape[1:3]
  first = jnp.full(y.shape, k * k, jnp.int32)
  for d in reversed(range(k * k)):
    dy, dx = divmod(d, k)
    view = lax.slice(xp, (0, dy, dx, 0), (n, dy + s * (ho - 1) + 1, dx + s * (wo - 1) + 1, c),
                     (1, s, s, 1))
    first = jnp.where(view == y, d, first)
  qh, qw = -(-hp // s), -(-wp // s)

  def shifted(a, ah, aw):  # out[q] = a[q - (ah, aw)], zero outside, shape (n, qh, qw, c)
    return lax.pad(a, jnp.zeros((), a.dtype),
                   ((0, 0, 0), (ah, qh - ho - ah, 0), (aw, qw - wo - aw, 0), (0, 0, 0)))

  zero = jnp.zeros((), g.dtype)
  rows = []
  for rh in range(s):
    cols = []
    for rw in range(s):
      acc = jnp.zeros((n, qh, qw, c), g.dtype)
      for dy in range(rh, k, s):
        for dx in range(rw, k, s):
          d = dy * k + dx
          acc = acc + shifted(jnp.where(first == d, g, zero), dy // s, dx // s)
      cols.append(acc)
    rows.append(jnp.stack(cols, axis=3))  # (n, qh, qw, s, c)
  full = jnp.stack(rows, axis=2).reshape(n, qh * s, qw * s, c)  # (n, qh, s, qw, s, c)
  return (full[:, pt:pt + h, pl:pl + w, :],)


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
  forward pass's power (autodiff recomputes it). `pow` is kept (an rsqrt form moved the BVLC
  input gradient 2e-5 away from PyTorch's, over the equivalence tests' 1e-5).
  """
  return _lrn(x, int(size), float(alpha), float(beta), float(bias))


def _window_sum(v: jax.Array, size: int, low: int) -> jax.Array:
  """Sum over the channel window [c - low, c - low + size) (zero outside the channels)."""
  return lax.reduce_window(v, 0.0, lax.add, (1, 1, 1, size), (1, 1, 1, 1),
                           ((0, 0), (0, 0), (0, 0), (low, size - 1 - low)))


def _lrn_parts(x, size, alpha, beta, bias):
  d = bias + alpha * _window_sum(x * x, size, size // 2)
  p = d ** (-beta)
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
