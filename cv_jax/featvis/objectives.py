"""Objectives (Lucid convention: maximised), composable with +, -, scalar * and /.

An `Objective` is a function of `T`, a callable mapping a layer name to its activation batch
(NHWC, or (B, classes) for logits); the special name "input" is the parameterised image in
[0, 1] before transforms. It returns a scalar. `objective.layers` lists the layers it needs, so
the forward pass stops at the deepest one. `batch=b` restricts an objective to image b.
Definitions follow Lucid's objectives (Lucid `optvis/objectives.py`).
"""

from __future__ import annotations

import numbers
import re
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

T_ = Callable[[str], jax.Array]


class Objective:
  """A scalar function of the activations, to be maximised."""

  def __init__(self, fn: Callable[[T_], jax.Array], layers: Iterable[str], name: str = "objective"):
    self.fn = fn
    self.layers = frozenset(layers)
    self.name = name

  def __call__(self, T: T_) -> jax.Array:
    return self.fn(T)

  def __add__(self, other):
    if isinstance(other, numbers.Number):
      return Objective(lambda T: self(T) + other, self.layers, f"{self.name} + {other}")
    other = as_objective(other)
    return Objective(lambda T: self(T) + other(T), self.layers | other.layers,
                     f"{self.name} + {other.name}")

  def __radd__(self, other):
    if isinstance(other, numbers.Number) and other == 0:  # sum([...])
      return self
    return self.__add__(other)

  def __neg__(self):
    return Objective(lambda T: -self(T), self.layers, f"-{self.name}")

  def __sub__(self, other):
    return self + (-as_objective(other) if not isinstance(other, numbers.Number) else -other)

  def __rsub__(self, other):
    return (-self) + other

  def __mul__(self, k):
    if not isinstance(k, numbers.Number):
      raise ValueError("objectives can only be multiplied by a scalar number")
    return Objective(lambda T: k * self(T), self.layers, f"{k} * {self.name}")

  __rmul__ = __mul__

  def __truediv__(self, k):
    return self * (1.0 / k)

  def __repr__(self):
    return f"Objective({self.name})"


def _select(x: jax.Array, batch: int | None) -> jax.Array:
  return x if batch is None else x[batch:batch + 1]


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
  """Mean of channel `n` of `layer` over batch, height and width."""
  return Objective(lambda T: jnp.mean(_select(T(layer), batch)[..., n]), [layer],
                   f"channel({layer}:{n})")


def neuron(layer: str, n: int, x: int | None = None, y: int | None = None,
           batch: int | None = None) -> Objective:
  """Channel `n` at one position (default (H//2, W//2), Lucid), averaged over the batch.

  `x` indexes the first spatial axis (rows) and `y` the second, as in Lucid's `layer[:, x, y, n]`.
  """
  def fn(T):
    a = _select(T(layer), batch)
    xi = a.shape[1] // 2 if x is None else x
    yi = a.shape[2] // 2 if y is None else y
    return jnp.mean(a[:, xi, yi, n])
  return Objective(fn, [layer], f"neuron({layer}:{n})")


def direction(layer: str, vec, cossim_pow: float = 0.0, batch: int | None = None) -> Objective:
  """Mean over positions of <A, vec>; with cossim_pow > 0 times max(0.1, cos)^cossim_pow."""
  vec = jnp.asarray(np.asarray(vec, np.float32))

  def fn(T):
    a = _select(T(layer), batch)
    dot = jnp.sum(a * vec, axis=-1)
    if not cossim_pow:
      return jnp.mean(dot)
    cos = dot / (1e-6 + jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(vec))
    return jnp.mean(dot * jnp.maximum(0.1, cos) ** cossim_pow)
  return Objective(fn, [layer], f"direction({layer})")


def gram_matrices(a: jax.Array) -> jax.Array:
  """Per-image Gram matrices G_b = F_b^T F_b (B, C, C) with F_b the (H·W, C) activations.

  The gradient is one product per image, dF = F (dG + dG^T) (`_gram_bwd`); autodiff emits two
  (one per factor), and XLA CPU runs the batched transposed pair at about half the speed.
  """
  f = a.reshape(a.shape[0], -1, a.shape[-1])
  return _gram(f)


@jax.custom_vjp
def _gram(f):
  return jnp.einsum("bpi,bpj->bij", f, f)


def _gram_fwd(f):
  return _gram(f), f


def _gram_bwd(f, dg):
  return (jnp.einsum("bpj,bjk->bpk", f, dg + jnp.swapaxes(dg, 1, 2)),)


_gram.defvjp(_gram_fwd, _gram_bwd)


def diversity_value(a: jax.Array) -> jax.Array:
  """(1/B) Σ_{i≠j} <Ĝ_i, Ĝ_j>_F with Ĝ = G / ‖G‖_F (TF l2_normalize, eps 1e-10 under the sqrt).

  The gradient is closed-form (`_diversity_bwd`): with S = Σ_j Ĝ_j, d/dĜ_i = 2 (S - Ĝ_i) / B,
  through the normalisation (M - Ĝ <Ĝ, M>) / ‖G‖ (M alone where the eps clamps), and, as that
  is symmetric, dF_i = 2 F_i dG_i: one product per image and a few elementwise passes, where
  autodiff added a transposed copy of the (B, C, C) cotangent and more passes.
  """
  return _diversity(a.reshape(a.shape[0], -1, a.shape[-1]))


_EPS = 1e-10


def _diversity_parts(f):
  g = _gram(f)
  q = jnp.sum(g * g, axis=(1, 2), keepdims=True)
  r = jax.lax.rsqrt(jnp.maximum(q, _EPS))
  g = g * r
  flat = g.reshape(g.shape[0], -1)
  # sum_{i != j} <f_i, f_j> = |sum_i f_i|^2 - sum_i |f_i|^2: no (B x B) product (a B x C^2
  # matrix product whose gradient XLA CPU runs at ~1 GFLOP/s). The batch sum is a product with
  # ones: XLA CPU's reduce over the leading axis took 2.3x as long (fwd+grad, B=9, C=512).
  total = jnp.ones((flat.shape[0],), flat.dtype) @ flat
  value = (jnp.sum(total * total) - jnp.sum(flat * flat)) / f.shape[0]
  return value, (f, g, q, r, total.reshape(g.shape[1:]))


@jax.custom_vjp
def _diversity(f):
  return _diversity_parts(f)[0]


def _diversity_fwd(f):
  return _diversity_parts(f)


def _diversity_bwd(res, ct):
  f, gh, q, r, s = res
  m = (2.0 / f.shape[0]) * ct * (s[None] - gh)
  inner = jnp.sum(gh * m, axis=(1, 2), keepdims=True)
  dg = r * (m - jnp.where(q > _EPS, gh * inner, jnp.zeros((), m.dtype)))
  return (2.0 * jnp.einsum("bpj,bjk->bpk", f, dg),)


_diversity.defvjp(_diversity_fwd, _diversity_bwd)


def diversity(layer: str) -> Objective:
  """Lucid's diversity: similarity of the batch's normalised Gram matrices (use with a minus)."""
  return Objective(lambda T: diversity_value(T(layer)), [layer], f"diversity({layer})")


def L1(layer: str = "input", constant: float = 0.0, batch: int | None = None) -> Objective:
  """Σ |A - constant|."""
  return Objective(lambda T: jnp.sum(jnp.abs(_select(T(layer), batch) - constant)), [layer],
                   f"L1({layer})")


def L2(layer: str = "input", constant: float = 0.0, epsilon: float = 1e-6,
       batch: int | None = None) -> Objective:
  """sqrt(epsilon + Σ (A - constant)^2)."""
  return Objective(lambda T: jnp.sqrt(epsilon + jnp.sum((_select(T(layer), batch) - constant) ** 2)),
                   [layer], f"L2({layer})")


def total_variation(layer: str = "input", batch: int | None = None) -> Objective:
  """TF `image.total_variation` summed over the batch: Σ |neighbour differences|."""
  def fn(T):
    a = _select(T(layer), batch)
    return (jnp.sum(jnp.abs(a[:, 1:] - a[:, :-1])) + jnp.sum(jnp.abs(a[:, :, 1:] - a[:, :, :-1])))
  return Objective(fn, [layer], f"total_variation({layer})")


_BLUR_K = np.array([[0.5, 1.0, 0.5], [1.0, 1.0, 1.0], [0.5, 1.0, 0.5]], np.float32)


def blur(x: jax.Array) -> jax.Array:
  """Lucid's 3x3 blur (centre cross 1, corners 0.5), normalised by the kernel mass inside the image."""
  k = jnp.asarray(_BLUR_K)[:, :, None, None]
  c = x.shape[-1]
  kern = jnp.tile(k, (1, 1, 1, c))

  def conv(t):
    return jax.lax.conv_general_dilated(t, kern, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c)
  return conv(x) / conv(jnp.ones_like(x))


def blur_input_each_step() -> Objective:
  """0.5 Σ (x - stop_gradient(blur(x)))^2 on the input; `-k * blur_input_each_step()` blurs."""
  def fn(T):
    x = T("input")
    return 0.5 * jnp.sum((x - jax.lax.stop_gradient(blur(x))) ** 2)
  return Objective(fn, ["input"], "blur_input_each_step")


def deepdream(layer: str, batch: int | None = None) -> Objective:
  """mean(A^2)."""
  return Objective(lambda T: jnp.mean(_select(T(layer), batch) ** 2), [layer], f"deepdream({layer})")


def class_logit(label: int, layer: str = "softmax2_pre_activation",
                batch: int | None = None) -> Objective:
  """Σ over the batch of logit `label` (Lucid's `class_logit`)."""
  return Objective(lambda T: jnp.sum(_select(T(layer), batch)[:, label]), [layer],
                   f"class_logit({label})")


_CHANNEL_RE = re.compile(r"^(.+):(\d+)$")


def as_objective(obj) -> Objective:
  """Objectives pass through; "layer:n" strings become `channel(layer, n)`."""
  if isinstance(obj, Objective):
    return obj
  if isinstance(obj, str):
    m = _CHANNEL_RE.match(obj.strip())
    if not m:
      raise ValueError(f"cannot parse objective {obj!r}; use 'layer:channel', e.g. "
                       f"'mixed4a_pre_relu:476'")
    return channel(m.group(1), int(m.group(2)))
  raise ValueError(f"not an objective: {obj!r}")
