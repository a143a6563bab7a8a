"""Feature accentuation: the seeded FFT parameterisation reproduces the seed, the layer-L2
regulariser against a NumPy computation, and the seeds × units renderer (one program, one trace,
determinism, the regulariser keeps the image near its seed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax import featvis, models
from cv_jax.featvis import accentuation as A
from cv_jax.featvis import crops


def seeds(n=2, size=32):
  rng = np.random.default_rng(0)
  yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
  out = []
  for i in range(n):
    base = np.stack([yy, xx, 0.5 + 0.4 * np.sin(6 * (yy + i) * xx)], -1)
    out.append(np.clip(base + 0.05 * rng.normal(size=base.shape), 0, 1))
  return np.stack(out).astype(np.float32)


def test_seeded_spectrum_reproduces_the_seed():
  s = seeds(1, 32)[0]
  s[0, 0] = [0.0, 1.0, 0.5]  # saturated pixels are clipped to [eps, 1 - eps]
  p = A.seed_to_spectrum(s, 1.0, 1e-3)
  assert p.shape == (3, 32, 17, 2)
  img = np.asarray(A.spectrum_to_image(jnp.asarray(p[None]), 32, 32))[0]
  np.testing.assert_allclose(img, np.clip(s, 1e-3, 1 - 1e-3), atol=2e-5)


@pytest.fixture(scope="module")
def net():
  return models.load("googlenet_bvlc", random_init=0)


def small(**kw):
  c = featvis.get_config("accentuation")
  c.size, c.model_size, c.crops, c.steps = 32, 40, 2, 3
  for k, v in kw.items():
    c[k] = v
  return c


def test_regularizer_matches_numpy(net):
  cfg = small(noise=0.0, crops=3)
  units = (models.Unit.parse("conv2d2_pre_relu:3", net),)
  eng = A.Engine(net, units, 2, cfg)
  s = jnp.asarray(seeds(2))
  other = jnp.asarray(seeds(2)[::-1])
  mp = net.params()
  keys = eng.step_keys(jnp.stack([jax.random.PRNGKey(3)]), 5)
  idx = jnp.asarray([3])
  obj0, reg0 = eng.terms(s[None], s, mp, idx, keys)
  assert np.all(np.asarray(reg0) < 1e-4)  # image == seed, no noise: zero distance
  obj, reg = eng.terms(other[None], s, mp, idx, keys)
  for b in range(2):  # recompute image b's terms from its boxes with plain NumPy reductions
    boxes = crops.accent_boxes(jax.random.split(keys[b], 3)[0], 3, 0.05, 0.99)
    x = crops.crop_and_resize(other[b], boxes, (40, 40))
    y = crops.crop_and_resize(s[b], boxes, (40, 40))
    ax = np.asarray(net(x, ("conv2d2_pre_relu",))["conv2d2_pre_relu"], np.float64)
    ay = np.asarray(net(y, ("conv2d2_pre_relu",))["conv2d2_pre_relu"], np.float64)
    want_reg = np.sqrt(((ax - ay) ** 2).sum(-1)).mean()
    want_obj = ax[..., 3].mean()
    np.testing.assert_allclose(float(reg[0, b]), want_reg, rtol=1e-4)
    np.testing.assert_allclose(float(obj[0, b]), want_obj, rtol=1e-4, atol=1e-4)


def test_render_seeds_by_units_one_trace_deterministic(net, monkeypatch):
  calls = []
  orig = A.Engine.step

  def counting(self, *a, **k):
    calls.append(1)
    return orig(self, *a, **k)

  monkeypatch.setattr(A.Engine, "step", counting)
  units = ["conv2d2_pre_relu:3", "mixed3a_pre_relu:5", "mixed3a_pre_relu:9"]
  s = seeds(2)
  a = featvis.render(net, units, small(), seed_images=s, progress=True)
  b = featvis.render(net, units, small(), seed_images=s, progress=False)
  assert len(calls) == 1
  np.testing.assert_array_equal(a["images"], b["images"])
  assert a["images"].shape == (3, 2, 32, 32, 3) and a["transparency"].shape == (3, 2, 32, 32, 3)
  assert a["balance"].shape == (3, 2) and np.all(a["balance"] > 0)
  alone = featvis.render(net, units[1:2], small(), seed_images=s, progress=False)
  np.testing.assert_allclose(alone["images"][0], a["images"][1], atol=1e-4)
  c = featvis.render(net, units, small(), seed_images=s, key=jax.random.PRNGKey(9), progress=False)
  assert np.abs(c["images"] - a["images"]).max() > 1e-4


def test_accentuation_raises_the_unit_and_the_penalty_holds_the_seed(net):
  units = ["mixed3a_pre_relu:5"]
  s = seeds(1)
  free = featvis.render(net, units, small(steps=10, reg_alpha=0.0), seed_images=s, progress=False)
  held = featvis.render(net, units, small(steps=10, reg_alpha=20.0), seed_images=s,
                        progress=False)
  assert free["activation"][0, 0] > free["seed_activation"][0, 0]
  d_free = np.abs(free["images"][0, 0] - s[0]).mean()
  d_held = np.abs(held["images"][0, 0] - s[0]).mean()
  assert d_held < d_free


def test_seed_inputs_and_errors(net, tmp_path):
  from PIL import Image
  p = tmp_path / "seed.png"
  Image.fromarray((seeds(1, 48)[0] * 255).astype(np.uint8)).save(p)
  got = A.load_seeds([p, seeds(1, 20)[0]], 32)
  assert got.shape == (2, 32, 32, 3) and got.min() >= 0 and got.max() <= 1
  with pytest.raises(ValueError, match="seed images"):
    featvis.render(net, ["conv2d2_pre_relu:3"], small())
  with pytest.raises(ValueError, match="accentuation preset only"):
    featvis.render(net, ["conv2d2_pre_relu:3"], featvis.get_config("lucid"), seed_images=[p])
