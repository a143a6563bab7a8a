"""featvis objectives: values and gradients against hand-computed NumPy cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax.featvis import objectives as O
from cv_jax.models import layers as L

RS = np.random.RandomState(0)
A = RS.randn(3, 4, 5, 6).astype(np.float32)          # (B, H, W, C)
X = RS.rand(3, 6, 7, 3).astype(np.float32)           # input image
LOGITS = RS.randn(3, 10).astype(np.float32)
ACTS = {"layer": A, "input": X, "logits": LOGITS}


def T_of(d):
  return lambda name: jnp.asarray(d[name])


def value(obj, d=ACTS):
  return float(obj(T_of(d)))


def grad_wrt(obj, name, d=ACTS):
  def f(a):
    dd = dict(d, **{name: a})
    return obj(lambda n: jnp.asarray(dd[n]))
  return np.asarray(jax.grad(f)(jnp.asarray(d[name])))


def test_channel_value_and_gradient():
  assert value(O.channel("layer", 2)) == pytest.approx(A[..., 2].mean(), rel=1e-5)
  assert value(O.channel("layer", 2, batch=1)) == pytest.approx(A[1, ..., 2].mean(), rel=1e-5)
  g = grad_wrt(O.channel("layer", 2), "layer")
  ref = np.zeros_like(A)
  ref[..., 2] = 1.0 / (3 * 4 * 5)
  np.testing.assert_allclose(g, ref, rtol=1e-6)
  g = grad_wrt(O.channel("layer", 2, batch=1), "layer")
  assert np.count_nonzero(g) == 4 * 5 and np.all(g[1, ..., 2] == pytest.approx(1 / 20))


def test_neuron_uses_lucid_centre_and_axis_order():
  assert value(O.neuron("layer", 3)) == pytest.approx(A[:, 2, 2, 3].mean(), rel=1e-6)
  assert value(O.neuron("layer", 3, x=1, y=4)) == pytest.approx(A[:, 1, 4, 3].mean(), rel=1e-6)


def test_direction_dot_and_cossim():
  v = RS.randn(6).astype(np.float32)
  dot = (A * v).sum(-1)
  assert value(O.direction("layer", v)) == pytest.approx(dot.mean(), rel=1e-5)
  cos = dot / (1e-6 + np.linalg.norm(A, axis=-1) * np.linalg.norm(v))
  ref = (dot * np.maximum(0.1, cos) ** 2).mean()
  assert value(O.direction("layer", v, cossim_pow=2)) == pytest.approx(ref, rel=1e-4)


def _diversity_loop(a):
  b = a.shape[0]
  grams = []
  for i in range(b):
    f = a[i].reshape(-1, a.shape[-1]).astype(np.float64)
    g = f.T @ f
    grams.append(g / np.sqrt(max((g * g).sum(), 1e-10)))
  return sum((grams[i] * grams[j]).sum() for i in range(b) for j in range(b) if i != j) / b


def test_diversity_matches_direct_loop_value_and_gradient():
  assert value(O.diversity("layer")) == pytest.approx(_diversity_loop(A), rel=1e-4)
  g = grad_wrt(O.diversity("layer"), "layer")
  eps = 1e-3
  for idx in [(0, 1, 2, 3), (2, 3, 4, 5), (1, 0, 0, 0)]:
    ap, am = A.astype(np.float64).copy(), A.astype(np.float64).copy()
    ap[idx] += eps
    am[idx] -= eps
    fd = (_diversity_loop(ap) - _diversity_loop(am)) / (2 * eps)
    assert g[idx] == pytest.approx(fd, rel=2e-2, abs=1e-4)
  # identical images are maximally similar: D = (B - 1)
  same = np.repeat(A[:1], 3, 0)
  assert value(O.diversity("layer"), {"layer": same}) == pytest.approx(2.0, rel=1e-5)


def test_diversity_gradient_closed_form_equals_autodiff():
  """The closed-form VJP of `diversity_value` against autodiff of the plain formula, float64,
  with an all-zero image (the eps clamp of the normalisation) and a nearly-zero one."""
  from cv_jax.featvis.objectives import diversity_value

  def plain(a):
    f = a.reshape(a.shape[0], -1, a.shape[-1])
    g = jnp.einsum("bpi,bpj->bij", f, f)
    g = g * jax.lax.rsqrt(jnp.maximum(jnp.sum(g * g, axis=(1, 2), keepdims=True), 1e-10))
    sim = jnp.einsum("iab,jab->ij", g, g)
    return (jnp.sum(sim) - jnp.trace(sim)) / a.shape[0]

  rng = np.random.default_rng(5)
  a = rng.standard_normal((4, 3, 5, 7))
  a[1] = 0.0
  a[2] *= 1e-4  # |G| ~ 1e-7: under the clamp's sqrt(1e-10) = 1e-5
  with jax.enable_x64(True):
    x = jnp.asarray(a)
    v1, g1 = jax.value_and_grad(diversity_value)(x)
    v2, g2 = jax.value_and_grad(plain)(x)
    _, vjp = jax.vjp(diversity_value, x)
    g3 = vjp(jnp.asarray(-2.5))[0]
  assert float(v1) == pytest.approx(float(v2), rel=1e-12)
  np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(np.asarray(g3), -2.5 * np.asarray(g2), rtol=1e-9, atol=1e-12)
  assert np.abs(np.asarray(g2)[2]).max() > 0 and np.abs(np.asarray(g2)[0]).max() > 0


def test_gram_gradient_is_the_product_rule():
  """`gram_matrices`' one-product VJP against NumPy's closed form F (dG + dG^T), float64, with
  an asymmetric cotangent (the case a symmetric-only shortcut would get wrong)."""
  from cv_jax.featvis.objectives import gram_matrices
  rng = np.random.default_rng(3)
  a = rng.standard_normal((3, 4, 5, 6))
  dg = rng.standard_normal((3, 6, 6))
  with jax.enable_x64(True):
    _, vjp = jax.vjp(gram_matrices, jnp.asarray(a))
    got = np.asarray(vjp(jnp.asarray(dg))[0])
  f = a.reshape(3, -1, 6)
  want = np.stack([f[b] @ (dg[b] + dg[b].T) for b in range(3)]).reshape(a.shape)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_input_penalties():
  assert value(O.L1(constant=0.5)) == pytest.approx(np.abs(X - 0.5).sum(), rel=1e-5)
  np.testing.assert_allclose(grad_wrt(O.L1(constant=0.5), "input"), np.sign(X - 0.5))
  l2 = np.sqrt(1e-6 + ((X - 0.2) ** 2).sum())
  assert value(O.L2(constant=0.2)) == pytest.approx(l2, rel=1e-5)
  np.testing.assert_allclose(grad_wrt(O.L2(constant=0.2), "input"), (X - 0.2) / l2, rtol=1e-4)
  tv = np.abs(np.diff(X, axis=1)).sum() + np.abs(np.diff(X, axis=2)).sum()
  assert value(O.total_variation()) == pytest.approx(tv, rel=1e-5)
  # a constant image has zero TV and zero blur penalty
  const = {"input": np.full_like(X, 0.3)}
  assert value(O.total_variation(), const) == 0.0
  assert value(O.blur_input_each_step(), const) == pytest.approx(0.0, abs=1e-9)


def test_blur_penalty_matches_numpy():
  k = np.array([[0.5, 1, 0.5], [1, 1, 1], [0.5, 1, 0.5]])
  xp = np.pad(X.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  mp = np.pad(np.ones_like(X, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  num = sum(k[i, j] * xp[:, i:i + 6, j:j + 7] for i in range(3) for j in range(3))
  den = sum(k[i, j] * mp[:, i:i + 6, j:j + 7] for i in range(3) for j in range(3))
  blurred = num / den
  assert value(O.blur_input_each_step()) == pytest.approx(0.5 * ((X - blurred) ** 2).sum(), rel=1e-4)
  # the blurred copy is a constant: gradient is x - blur(x)
  np.testing.assert_allclose(grad_wrt(O.blur_input_each_step(), "input"), X - blurred, atol=1e-5)


def test_deepdream_and_class_logit():
  assert value(O.deepdream("layer")) == pytest.approx((A ** 2).mean(), rel=1e-5)
  np.testing.assert_allclose(grad_wrt(O.deepdream("layer"), "layer"), 2 * A / A.size, rtol=1e-5)
  assert value(O.class_logit(4, "logits")) == pytest.approx(LOGITS[:, 4].sum(), rel=1e-5)
  assert value(O.class_logit(4, "logits", batch=2)) == pytest.approx(LOGITS[2, 4], rel=1e-5)


def test_composition_and_parsing():
  obj = O.channel("layer", 1) - 100 * O.diversity("layer") + 0.5 * O.L1() - O.deepdream("layer") / 2
  ref = (A[..., 1].mean() - 100 * _diversity_loop(A) + 0.5 * np.abs(X).sum() - (A ** 2).mean() / 2)
  assert value(obj) == pytest.approx(ref, rel=1e-4)
  assert obj.layers == {"layer", "input"}
  assert value(sum([O.channel("layer", i, batch=i) for i in range(3)])) == pytest.approx(
      sum(A[i, ..., i].mean() for i in range(3)), rel=1e-5)
  p = O.as_objective("mixed4a_pre_relu:476")
  assert p.layers == {"mixed4a_pre_relu"}
  assert value(p, {"mixed4a_pre_relu": np.ones((1, 2, 2, 500), np.float32) * np.arange(500)}) == 476
  with pytest.raises(ValueError):
    O.as_objective("mixed4a_pre_relu")
  with pytest.raises(ValueError):
    O.channel("layer", 1) * O.channel("layer", 2)


def _vjp(x, g, step):
  _, f = jax.vjp(lambda v: L.relu(v, "lucid", step), jnp.asarray(x))
  return np.asarray(f(jnp.asarray(g))[0])


def test_redirected_relu_semantics():
  # Lucid's `redirected_relu_grad`; g is the cotangent of the MINIMISED loss.
  x = np.array([[-1.0, -2.0, -3.0], [1.0, -1.0, 2.0]], np.float32)
  g = np.array([[-0.5, 0.7, -0.2], [0.3, -0.4, 0.0]], np.float32)
  out = _vjp(x, g, step=0)
  # row 0: every x < 0 -> relu gradient all zero -> redirected: pass g except where g > 0
  np.testing.assert_allclose(out[0], [-0.5, 0.0, -0.2])
  # row 1: ordinary relu gradient is non-zero -> plain relu gradient
  np.testing.assert_allclose(out[1], [0.3, 0.0, 0.0])
  np.testing.assert_allclose(_vjp(x, g, step=16)[0], [-0.5, 0.0, -0.2])   # still active at 16
  np.testing.assert_allclose(_vjp(x, g, step=17)[0], [0.0, 0.0, 0.0])     # plain after 16
  # a row with only zero relu-gradient because g == 0 where x >= 0 is redirected as well
  x2 = np.array([[1.0, -1.0]], np.float32)
  np.testing.assert_allclose(_vjp(x2, np.array([[0.0, -2.0]], np.float32), 3), [[0.0, -2.0]])
