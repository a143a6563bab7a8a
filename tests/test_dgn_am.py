"""DGN-AM: the DeePSiM fc6 generator against an independent PyTorch re-implementation of its
Caffe definition (outputs and code gradients, random weights), the weight readers, pixel
conventions, the update rule against NumPy, and the batched code-space loop."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cv_jax import featvis, models
from cv_jax.featvis import dgn_am
from cv_jax.models import WeightsError, deepsim
from cv_jax.weights import generator as DW

torch_deepsim = pytest.importorskip("cv_jax.testing.torch_deepsim")
CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def rel(a, b):
  return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("divisor", [1, 16])
def test_generator_matches_pytorch_reference(divisor, highest_precision):
  spec = deepsim.FC6 if divisor == 1 else deepsim.narrow(deepsim.FC6, divisor)
  params = DW.init_generator(spec, seed=divisor)
  for p in params.values():  # larger weights than the default init: a non-trivial image
    p["weights"] *= 3.0
  n = deepsim.code_size(spec)
  z = np.random.default_rng(0).normal(size=(2, n)).astype(np.float32)
  ct = np.random.default_rng(1).normal(size=(2, 256, 256, 3))
  want, want_g = torch_deepsim.forward_and_grad(params, z, ct, divisor)
  gen = deepsim.Generator(params, spec)
  got = np.asarray(gen(z))  # float32
  assert got.shape == (2, 256, 256, 3) and np.std(want) > 1e-3
  assert rel(got, want) < 1e-5
  # Code gradients in float64: in float32 a LeakyReLU input within rounding of 0 can take the
  # other slope and move a whole row of the gradient by ~1e-4 (seen at full width), which
  # says nothing about the maths being compared.
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    out64, vjp = jax.vjp(lambda c: deepsim.apply(spec, p64, c), jnp.asarray(z, jnp.float64))
    (got_g,) = vjp(jnp.asarray(ct, jnp.float64))
    assert rel(out64, want) < 1e-10
    assert rel(got_g, want_g) < 1e-10


def test_spec_sizes_and_pixel_conventions(bvlc_model):
  assert deepsim.output_size() == 256 and deepsim.code_size() == 4096
  n_params = sum(int(np.prod(s)) for v in deepsim.param_shapes().values() for s in v.values())
  assert n_params == 56_097_891  # successors_spec §3.2
  assert deepsim.crop_offset(256, 227) == 14 and deepsim.crop_offset(256, 224) == 16
  bgr = np.random.default_rng(0).uniform(-120, 120, size=(1, 8, 8, 3)).astype(np.float32)
  x = deepsim.to_rgb01(jnp.asarray(bgr))
  # BVLC GoogLeNet's own preprocessing gives back the generator's BGR mean-subtracted blob
  from cv_jax.models import network
  np.testing.assert_allclose(np.asarray(network.preprocess(bvlc_model.spec, x)), bgr, atol=1e-4)


def test_readers_caffemodel_torch_npz_and_errors(tmp_path):
  import torch
  from cv_jax.weights.formats.caffe import write_caffemodel
  spec = deepsim.narrow(deepsim.FC6, 16)
  params = DW.init_generator(spec, 3)
  blobs = {f"{n}/{p}": v[p] for n, v in params.items() for p in ("weights", "bias")}
  cm = write_caffemodel(tmp_path / "generator.caffemodel", blobs)
  net = torch_deepsim.load(torch_deepsim.build(16), params)
  sd = {"G." + k.replace("deconv5.", "deconv5.1."): v.float() for k, v in net.state_dict().items()}
  torch.save(sd, tmp_path / "upconvGAN_fc6.pt")
  npz = DW.save_generator(tmp_path / "g.npz", params)
  for path in (cm, tmp_path / "upconvGAN_fc6.pt", npz):
    got = DW.read_generator(path, spec)
    for n in params:
      for p in ("weights", "bias"):
        np.testing.assert_array_equal(got[n][p], params[n][p], err_msg=f"{path.name} {n}/{p}")
  with pytest.raises(WeightsError, match="not found"):
    DW.read_generator(tmp_path / "missing.caffemodel")
  with pytest.raises(WeightsError, match="shape"):
    DW.read_generator(cm)  # a narrow file is not the full fc6 generator
  del blobs["deconv0/bias"]
  with pytest.raises(WeightsError, match="missing deconv0/bias"):
    DW.read_generator(write_caffemodel(tmp_path / "bad.caffemodel", blobs), spec)
  with pytest.raises(WeightsError, match="generator weights"):
    DW.load_generator(None)


def test_update_rule_against_numpy():
  cfg = featvis.get_config("dgn_am")
  cfg.steps, cfg.lr, cfg.lr_end = 4, 2.0, 1e-10
  ub = np.asarray([0.5, 3.0, 3.0, 1.0, 9.0], np.float32)
  opt = dgn_am.make_optimizer(cfg)
  z = np.asarray([[0.2, -0.3, 1.0, 0.9, 0.0]], np.float32)
  state = opt.init(jnp.asarray(z))
  zj, want = jnp.asarray(z), z.astype(np.float64)
  rng = np.random.default_rng(0)
  for i in range(4):
    g = rng.normal(size=z.shape)
    g[0, 4] = 0.0
    updates, state = opt.update(-jnp.asarray(g, jnp.float32), state, zj)
    zj = dgn_am.project(zj + updates, cfg, jnp.asarray(ub))
    lr = 2.0 + (1e-10 - 2.0) * i / 4  # act_max.py: start + (end - start) * i / n_iters
    want = np.clip(want + lr * g / np.abs(g).mean(), 0, ub) * 0.99
  np.testing.assert_allclose(np.asarray(zj), want, rtol=1e-5, atol=1e-6)
  # a zero or non-finite gradient leaves the code alone
  u, _ = opt.update(jnp.zeros_like(zj), state, zj)
  assert np.all(np.asarray(u) == 0)
  u, _ = opt.update(jnp.full_like(zj, jnp.nan), state, zj)
  assert np.all(np.asarray(u) == 0)


def test_start_code_is_act_max_numpy_draw():
  cfg = featvis.get_config("dgn_am")
  z = dgn_am.start_codes(cfg, 3, 2, 4096)
  np.random.seed(0)
  want = np.random.normal(0, 1, (1, 4096))
  np.testing.assert_allclose(z[1, 0], want[0], rtol=1e-6)
  assert np.all(z[0] == z[2])


@pytest.fixture(scope="module")
def small_setup():
  spec = deepsim.narrow(deepsim.FC6, 16)
  gen = deepsim.Generator(
      {n: {"weights": v["weights"] * 4, "bias": v["bias"]} for n, v in
       DW.init_generator(spec, 0).items()}, spec)
  return models.load("googlenet_bvlc", random_init=0), gen


def test_code_space_loop_batched_traced_once_and_raises(small_setup, monkeypatch):
  net, gen = small_setup
  calls = []
  orig = dgn_am.Engine.step

  def counting(self, *a, **k):
    calls.append(1)
    return orig(self, *a, **k)

  monkeypatch.setattr(dgn_am.Engine, "step", counting)
  cfg = featvis.get_config("dgn_am")
  cfg.steps, cfg.size, cfg.batch, cfg.lr = 6, 64, 2, 0.3  # small steps: random weights
  units = ["conv2d2_pre_relu:3", "mixed3a_pre_relu:5"]
  cfg0 = ml_collections.ConfigDict(cfg.to_dict())
  cfg0.steps = 1  # its objective: the unit at the start code
  a = featvis.render(net, units, cfg, generator=gen, progress=True)
  b = featvis.render(net, units, cfg, generator=gen, progress=False)
  assert len(calls) == 1
  np.testing.assert_array_equal(a["images"], b["images"])
  assert a["images"].shape == (2, 2, 64, 64, 3) and a["codes"].shape == (2, 2, 256)
  assert a["codes"].min() >= 0  # clipped to [0, bound]
  alone = featvis.render(net, units[1:], cfg, generator=gen, progress=False)
  np.testing.assert_allclose(alone["codes"][0], a["codes"][1], rtol=1e-4, atol=1e-4)
  z0 = featvis.render(net, units, cfg0, generator=gen, progress=False)
  assert np.all(a["objective"] > z0["objective"])  # on the unclipped generator output


def test_cli_missing_generator_one_line_error():
  r = subprocess.run([sys.executable, "-m", "cv_jax.cli", "featvis",
                      f"--config={CONFIGS / 'featvis.py'}:dgn_am", "--config.units=mixed4a/pool:42",
                      "--config.generator=/no/such/generator.caffemodel"],
                     capture_output=True, text=True, timeout=300)
  err = [line for line in r.stderr.splitlines() if line.strip()]
  assert r.returncode == 1 and len(err) == 1, r.stderr
  assert err[0].startswith("cv-jax featvis: error: generator weights not found")
