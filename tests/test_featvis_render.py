"""featvis render loop: determinism, batched == single units, no retracing, presets, CLI output,
and real-weight renders of the paper's 18 units (BVLC GoogLeNet)."""

import chex
import jax
import numpy as np
import pytest

from cv_jax import featvis, paper_units as paper
from cv_jax.featvis import optimize as R


def small_cfg(mode="lucid", **kw):
  c = featvis.get_config("zimmermann2021" if mode == "lucid" else "lucent")
  c.size, c.pad, c.batch, c.steps = 32, 4, 2, 4
  c.diversity = 100.0 if mode == "lucid" else 0.0
  if mode == "lucid":
    c.transforms = (("jitter", 4), ("scale", (1.0, 0.95)), ("rotate", (-5, 0, 5)), ("jitter", 2))
  else:
    c.transforms = (("pad", 2), ("jitter", 2), ("scale", (0.95, 1.05)), ("rotate", (-5, 5)),
                    ("upsample", 48))
  for k, v in kw.items():
    c[k] = v
  return c


def test_presets_match_the_paper_and_libraries():
  z = featvis.get_config("zimmermann2021")
  assert (z.size, z.pad, z.batch, z.steps, z.lr, z.diversity) == (224, 16, 9, 2561, 0.05, 100.0)
  assert z.transforms[0] == ("jitter", 16) and z.transforms[-1] == ("jitter", 8)
  assert tuple(z.transforms[1][1]) == (1.0, 0.975, 1.025, 0.95, 1.05)
  assert tuple(z.transforms[2][1]) == tuple(range(-5, 6))
  assert z.relu == "lucid" and z.mode == "lucid" and z.fft and z.decorrelate and z.sigmoid
  l = featvis.get_config("lucid")
  assert (l.size, l.batch, l.steps, l.relu) == (128, 1, 513, "lucid")
  n = featvis.get_config("lucent")
  assert (n.size, n.steps, n.relu, n.transforms[-1]) == (128, 512, "lucent", ("upsample", 224))
  with pytest.raises(ValueError):
    featvis.get_config("olah")


def test_paper_units_land_in_their_branches(bvlc_model):
  from cv_jax import models
  assert len(paper.PAPER_UNITS) == 18
  v1 = models.load("inceptionv1", random_init=0)
  # round trip to inceptionv1 gives back the paper's concat indices
  assert [u.channel for u in paper.paper_units(v1)] == [c for _, _, c in paper.PAPER_UNITS_INCEPTIONV1]
  bv = paper.paper_units(bvlc_model)
  for s, u in zip(paper.PAPER_UNITS, bv):
    assert u.branch_str(bvlc_model) == s
  assert str(bv[5]) == "mixed4a_pre_relu:490"   # mixed4a pool 42: BVLC's 3x3 branch has 208 ch
  assert {k: str(u) for k, u in paper.catch_units(v1).items()} == {
      "j": "mixed4e_pre_relu:783", "t": "mixed4c_pre_relu:484", "z": "mixed5a_pre_relu:557"}


def test_render_is_deterministic_and_key_dependent(bvlc_model):
  c = small_cfg()
  a = featvis.render(bvlc_model, ["mixed3a/3x3:5"], c, key=jax.random.PRNGKey(1), progress=False)
  b = featvis.render(bvlc_model, ["mixed3a/3x3:5"], c, key=jax.random.PRNGKey(1), progress=False)
  d = featvis.render(bvlc_model, ["mixed3a/3x3:5"], c, key=jax.random.PRNGKey(2), progress=False)
  assert a["images"].shape == (1, 2, 32, 32, 3)
  np.testing.assert_array_equal(a["images"], b["images"])
  np.testing.assert_array_equal(a["activation"], b["activation"])
  assert not np.allclose(a["images"], d["images"])
  assert a["images"].min() >= 0 and a["images"].max() <= 1
  assert a["objective"].shape == (1, 2) and a["diversity"].shape == (1,)


def test_batched_units_equal_single_units(bvlc_model):
  c = small_cfg()
  us = ["mixed3a/3x3:5", "mixed3a/pool:3", "mixed3b/pool:7"]
  key = jax.random.PRNGKey(3)
  both = featvis.render(bvlc_model, us, c, key=key, progress=False)
  for i, u in enumerate(us):
    one = featvis.render(bvlc_model, [u], c, key=key, progress=False)
    np.testing.assert_allclose(both["images"][i], one["images"][0], atol=2e-5)
    np.testing.assert_allclose(both["activation"][i], one["activation"][0], rtol=1e-4, atol=1e-3)


def test_step_is_traced_once_across_chunks_and_calls(bvlc_model):
  c = small_cfg(seed=7, steps=6, batch=1, transforms=(("jitter", 2),))
  c.sd = 0.0123  # a config no other test uses -> a fresh engine
  us = featvis.parse_units(bvlc_model, ["mixed3a/3x3:1"])
  eng = R.get_engine(bvlc_model, us, c)
  eng.step = chex.assert_max_traces(eng.step, n=1)
  out1 = featvis.render(bvlc_model, ["mixed3a/3x3:1"], c, progress=True)      # 6 chunks
  c.steps = 9
  out2 = featvis.render(bvlc_model, ["mixed3a/3x3:9"], c, progress=True)      # other channel
  assert out1["history"].shape[0] == 6 and out2["history"].shape[0] == 9


def test_lucent_mode_renders_and_raises_activation(bvlc_model):
  c = small_cfg("lucent", steps=0)
  start = featvis.render(bvlc_model, ["mixed3a/3x3:20"], c, progress=False)
  c.steps = 12
  out = featvis.render(bvlc_model, ["mixed3a/3x3:20"], c, progress=False)
  assert out["images"].shape == (1, 2, 32, 32, 3)
  assert np.all(out["activation"] > start["activation"] + 20)


def test_custom_objective_unit_and_snapshots(bvlc_model):
  from cv_jax.featvis import objectives as O
  c = small_cfg(steps=3, thresholds=(1, 2), batch=1, transforms=(("jitter", 2),))
  obj = O.channel("mixed3a_pre_relu", 10) - 0.01 * O.total_variation()
  out = featvis.render(bvlc_model, [obj], c, progress=False)
  assert sorted(out["snapshots"]) == [1, 2, 3]
  assert np.isnan(out["activation"]).all()
  assert not np.allclose(out["snapshots"][1], out["snapshots"][3])


def test_bad_inputs_raise(bvlc_model):
  with pytest.raises(ValueError):
    featvis.render(bvlc_model, ["mixed3a/3x3:500"], small_cfg(), progress=False)
  with pytest.raises(ValueError):
    featvis.render(bvlc_model, [], small_cfg(), progress=False)
  with pytest.raises(ValueError):
    featvis.render(bvlc_model, ["mixed3a/3x3:1"], small_cfg(size=4), progress=False)


def test_cli_outputs(tmp_path):
  from cv_jax.featvis.outputs import write_outputs
  rs = np.random.RandomState(0)
  out = dict(units=["mixed4a_pre_relu:490", "mixed3a_pre_relu:5"],
             images=rs.rand(2, 3, 8, 8, 3).astype(np.float32), objective=rs.rand(2, 3),
             activation=rs.rand(2, 3), diversity=rs.rand(2))
  write_outputs(out, str(tmp_path))
  from PIL import Image
  im = np.asarray(Image.open(tmp_path / "mixed4a_pre_relu_490" / "image_2.png"))
  # cv2.imwrite's rule (docs/featvis.md): round half up is the same here (no exact ties)
  np.testing.assert_array_equal(im, np.floor(out["images"][0, 2] * 255 + 0.5).astype(np.uint8))
  sheet = np.asarray(Image.open(tmp_path / "contact_sheet.png"))
  assert sheet.shape == (2 * 8 + 3 * 4, 3 * 8 + 4 * 4, 3)
  z = np.load(tmp_path / "featvis.npz")
  np.testing.assert_allclose(z["activation"], out["activation"])
  assert list(z["units"]) == out["units"]


@pytest.mark.slow
def test_paper_units_short_render_raises_activation(bvlc_model):
  """All 18 paper units (mixed3a ... mixed5b, 3x3 and pool) in one program, real BVLC weights."""
  c = featvis.get_config("zimmermann2021")
  c.size, c.pad, c.batch, c.steps, c.diversity = 56, 4, 1, 0, 0.0
  c.transforms = (("jitter", 4),)
  # One network pass: these 20 steps amplify round-off (with the preset's micro_batch=1,
  # mixed5b:684 gains 4.59 instead of 5.87; the passes' equivalence is test_featvis_grad's).
  c.micro_batch = 0
  start = featvis.render(bvlc_model, paper.PAPER_UNITS, c, progress=False)
  c.steps = 20
  out = featvis.render(bvlc_model, paper.PAPER_UNITS, c, progress=False)
  a0, a1 = start["activation"][:, 0], out["activation"][:, 0]
  gain = a1 - a0
  # every unit rises by more than 5 and by more than its starting magnitude; most by hundreds
  assert np.all(gain > 5) and np.all(gain > np.abs(a0)), dict(zip(out["units"], zip(a0, a1)))
  assert np.median(gain) > 100
