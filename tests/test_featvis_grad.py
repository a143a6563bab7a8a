"""The featvis step's gradient: `Engine.loss_and_grad` (each random-scale branch holds its own
backward pass) must give the numbers of plain `jax.value_and_grad(Engine.loss)` for every
scale branch, with and without a fixed-size transform after the scale, with the diversity term,
the Lucid ReLU schedule and a custom objective that reads the untransformed input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax import featvis
from cv_jax.featvis import objectives as O
from cv_jax.featvis import optimize as R
from cv_jax.featvis import transform as tr


def _cfg(mode):
  c = featvis.get_config("zimmermann2021" if mode == "lucid" else "lucent")
  c.size, c.pad, c.batch = 32, 4, 2
  c.diversity = 100.0 if mode == "lucid" else 0.0
  if mode == "lucid":
    c.transforms = (("jitter", 4), ("scale", (0.9, 1.1)), ("rotate", (-5, 5)), ("jitter", 2))
  else:
    c.transforms = (("jitter", 2), ("scale", (0.9, 1.1)), ("rotate", (-5, 5)), ("upsample", 48))
  return c


@pytest.mark.parametrize("mode", ["lucid", "lucent"])
def test_loss_and_grad_equals_value_and_grad_of_loss(bvlc_model, mode):
  cfg = _cfg(mode)
  units = R.parse_units(bvlc_model, ["mixed3a/3x3:5", O.channel("mixed3b_pre_relu", 7)
                                     - 0.5 * O.Objective(lambda T: jnp.mean(T("input") ** 2),
                                                         ["input"], "l2")])
  eng = R.get_engine(bvlc_model, units, cfg)
  params = eng.init_state(jax.random.PRNGKey(0), units, 1)[0]
  mp = bvlc_model.params()
  idx = jnp.asarray([units[0].channel, 0], jnp.int32)
  scale = next(i for i, t in enumerate(eng.pipeline.transforms) if t.branches)
  fast = jax.jit(eng.loss_and_grad)
  plain = jax.jit(jax.value_and_grad(eng.loss, has_aux=True))
  for k in range(eng.pipeline.transforms[scale].branches):
    draws = list(eng.pipeline.draw(jax.random.PRNGKey(10 + k)))
    draws[scale] = jnp.int32(k)
    for step in ((3, 40) if k == 0 else (3,)):  # Lucid's ReLU redirection on, then off
      (l1, (p1, d1)), g1 = fast(params, mp, idx, step, tuple(draws))
      (l2, (p2, d2)), g2 = plain(params, mp, idx, step, tuple(draws))
      np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
      np.testing.assert_allclose(np.asarray(p1), np.asarray(p2), rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(np.asarray(d1), np.asarray(d2), rtol=1e-5, atol=1e-7)
      g1, g2 = np.asarray(g1), np.asarray(g2)
      assert np.abs(g2).max() > 0
      assert np.linalg.norm(g1 - g2) <= 1e-5 * np.linalg.norm(g2)


def test_pipeline_value_and_grad_without_branches():
  p = tr.Pipeline((tr.pad(2), tr.jitter(2), tr.random_rotate((-5, 5))))
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 12, 12, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (2, 14, 14, 3))
  draws = p.draw(jax.random.PRNGKey(2))

  def tail(y, a):
    return jnp.sum(y * w) + jnp.sum(a * a), jnp.mean(y)

  (v, aux), (gx, ga) = p.value_and_grad(tail, x, draws, x)
  (v2, _), (gx2, ga2) = jax.value_and_grad(
      lambda y, a: tail(p.run(y, draws), a), argnums=(0, 1), has_aux=True)(x, x)
  (_, aux2), _ = jax.value_and_grad(lambda y: tail(p.run(y, draws), x), has_aux=True)(x)
  np.testing.assert_allclose(float(aux), float(aux2), rtol=1e-6)
  np.testing.assert_allclose(float(v), float(v2), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(gx), np.asarray(gx2), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(np.asarray(ga), np.asarray(ga2), rtol=1e-6)


def test_micro_batched_network_passes_match_the_whole_batch(bvlc_model):
  """`config.micro_batch`: the network runs in passes of that many rows (uneven last pass,
  capped at MAX_PASSES); the step's loss, aux and gradient equal the one-pass step's up to
  float32 round-off (at these small maps XLA's per-row results are not bitwise batch-invariant;
  at the paper's sizes they were in our runs)."""
  units = R.parse_units(bvlc_model, ["mixed3a/3x3:5", "mixed3b/pool:2"])
  mp = bvlc_model.params()
  idx = jnp.asarray([u.channel for u in units], jnp.int32)
  out, hlo = {}, {}
  for m in (0, 3, 1):
    cfg = _cfg("lucid")
    cfg.batch, cfg.micro_batch = 4, m   # 8 rows: one pass, passes of 3 + 3 + 2, 8 passes
    eng = R.Engine(bvlc_model, tuple(("unit", u.layer) for u in units), cfg, R.make_optimizer(cfg))
    params = eng.init_state(jax.random.PRNGKey(0), units, 1)[0]
    draws = eng.pipeline.draw(jax.random.PRNGKey(3))
    fn = jax.jit(eng.loss_and_grad)
    out[m] = jax.tree.map(np.asarray, fn(params, mp, idx, 3, draws))
    hlo[m] = fn.lower(params, mp, idx, 3, draws).as_text().count("convolution(")
  assert hlo[0] < hlo[3] < hlo[1]  # the passes are separate copies of the network
  for m in (3, 1):
    for a, b in zip(jax.tree.leaves(out[m]), jax.tree.leaves(out[0])):
      assert np.abs(b).max() > 0 or b.ndim == 0
      assert np.linalg.norm(a - b) <= 1e-5 * max(np.linalg.norm(b), 1e-30)


def test_micro_batch_config_is_checked():
  cfg = _cfg("lucid")
  cfg.micro_batch = -1
  with pytest.raises(ValueError, match="micro_batch"):
    R.check_config(cfg)
