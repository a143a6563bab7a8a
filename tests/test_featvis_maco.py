"""MACO: the phase-only image against a NumPy reference, the fixed magnitude, crop_and_resize in
closed form, the magnitude spectrum (1/f images, resizing, the shipped default), and the
batched renderer (determinism, units alone == together, one trace for many units)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax import featvis, models
from cv_jax.featvis import crops, maco, param, spectrum

C_N = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
C_N = C_N / np.max(np.linalg.norm(C_N, axis=0))


def np_maco_image(phase, mag):
  """Xplique's maco_image_parametrization in NumPy (float64)."""
  p = (phase - phase.mean()) / (phase.std() + 1e-5)
  img = np.fft.irfft2(mag * np.exp(1j * p), axes=(-2, -1))
  img = np.transpose(img, (1, 2, 0))
  img = (img - img.mean()) / (img.std() + 1e-5)
  return 1 / (1 + np.exp(-(img @ C_N.T)))


def test_maco_image_matches_numpy_reference():
  rng = np.random.default_rng(0)
  phase = rng.normal(size=(3, 16, 9)).astype(np.float32)
  mag = rng.uniform(0.1, 5, size=(3, 16, 9)).astype(np.float32)
  got = np.asarray(maco.maco_image(jnp.asarray(phase), jnp.asarray(mag)))
  np.testing.assert_allclose(got, np_maco_image(phase.astype(np.float64), mag), atol=2e-6)


def test_magnitude_is_fixed_and_only_phase_moves():
  rng = np.random.default_rng(1)
  mag = rng.uniform(0.5, 2, size=(3, 16, 9))
  for seed in range(2):
    phase = np.random.default_rng(seed + 5).normal(size=(3, 16, 9))
    x = np.asarray(maco.maco_image(jnp.asarray(phase, jnp.float32), jnp.asarray(mag, jnp.float32)),
                   np.float64)
    t = np.log(x / (1 - x)) @ np.linalg.inv(C_N.T)  # undo sigmoid and colour: the standardised image
    m = np.abs(np.fft.rfft2(np.moveaxis(t, -1, 0)))
    ratio = m / mag
    ratio[:, 0, 0] = np.nan  # the DC term is changed by the mean removal
    # Hermitian-redundant bins (DC/Nyquist columns) mix conjugates; compare the strict interior.
    inner = ratio[:, 1:, 1:-1]
    assert np.nanstd(inner) / np.nanmean(inner) < 1e-3


def test_crop_and_resize_closed_forms():
  h, w = 9, 13
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  img = np.stack([2.0 * yy + 0.5 * xx, yy - xx, np.ones_like(yy)], -1).astype(np.float32)
  full = crops.crop_and_resize(jnp.asarray(img), jnp.asarray([[0.0, 0.0, 1.0, 1.0]]), (h, w))
  np.testing.assert_allclose(np.asarray(full[0]), img, atol=1e-5)
  box = np.asarray([[0.1, 0.2, 0.7, 0.9]], np.float32)
  out = np.asarray(crops.crop_and_resize(jnp.asarray(img), jnp.asarray(box), (5, 4)))[0]
  ys = 0.1 * (h - 1) + np.arange(5) * 0.6 * (h - 1) / 4  # TF crop_and_resize sample positions
  xs = 0.2 * (w - 1) + np.arange(4) * 0.7 * (w - 1) / 3
  Y, X = np.meshgrid(ys, xs, indexing="ij")
  np.testing.assert_allclose(out[..., 0], 2 * Y + 0.5 * X, atol=1e-4)  # bilinear is exact on ramps
  np.testing.assert_allclose(out[..., 1], Y - X, atol=1e-4)
  outside = np.asarray(crops.crop_and_resize(jnp.asarray(img), jnp.asarray([[-1.0, -1, 0.5, 0.5]]),
                                             (3, 3)))[0]
  assert np.all(outside[0] == 0) and np.all(outside[:, 0] == 0) and outside[2, 2, 2] == 1


def test_box_draws_follow_the_recipes():
  b = np.asarray(crops.maco_boxes(jax.random.PRNGKey(0), 20000, 0.3))
  side = b[:, 2] - b[:, 0]
  np.testing.assert_allclose(side, b[:, 3] - b[:, 1], atol=1e-6)
  assert abs(side.mean() - 0.3) < 0.003 and abs(side.std() - 0.05) < 0.003
  assert abs((b[:, 0] + b[:, 2]).mean() / 2 - 0.5) < 0.005
  assert abs(((b[:, 0] + b[:, 2]) / 2).std() - 0.15) < 0.005
  a = np.asarray(crops.accent_boxes(jax.random.PRNGKey(1), 20000, 0.05, 0.99))
  s = a[:, 2] - a[:, 0]
  assert s.min() >= 0.05 and s.max() <= 0.99 and abs(s.mean() - 0.52) < 0.01
  assert a[:, :2].min() >= 0 and a[:, 2:].max() <= 1 + 1e-6


def one_over_f_images(n, size, rng):
  fy = np.fft.fftfreq(size)[:, None]
  fx = np.fft.rfftfreq(size)[None, :]
  f = np.sqrt(fx ** 2 + fy ** 2)
  f[0, 0] = 1.0
  out = []
  for _ in range(n):
    spec = (rng.normal(size=(3,) + f.shape) + 1j * rng.normal(size=(3,) + f.shape)) / f
    x = np.fft.irfft2(spec, s=(size, size))
    x = (x - x.min()) / (x.max() - x.min())
    out.append(np.moveaxis(x, 0, -1))
  return out


def test_spectrum_of_one_over_f_noise_falls_as_one_over_f(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for i, im in enumerate(one_over_f_images(6, 64, rng)):
    Image.fromarray((im * 255).round().astype(np.uint8)).save(tmp_path / f"n{i}.png")
  m = spectrum.compute_spectrum(tmp_path, 64, decorrelate=False)
  assert m.shape == (3, 64, 33)
  f, prof = spectrum.radial_profile(m, 8)
  slope = np.polyfit(np.log(f), np.log(prof), 1)[0]
  assert -1.25 < slope < -0.8, slope
  out = tmp_path / "s.npz"
  spectrum.save_spectrum(out, m, source="test", n_images=6)
  np.testing.assert_allclose(spectrum.load_spectrum(out), m, rtol=2e-4)
  with pytest.raises(spectrum.SpectrumError, match="does not exist"):
    spectrum.compute_spectrum(tmp_path / "missing", 64)
  (tmp_path / "empty").mkdir()
  with pytest.raises(spectrum.SpectrumError, match="no images"):
    spectrum.compute_spectrum(tmp_path / "empty", 64)


def test_decorrelation_inverts_the_colour_map():
  t = np.random.default_rng(2).normal(size=(5, 3))
  rgb = np.asarray(param.decorrelate_color(jnp.asarray(t, jnp.float32)), np.float64)
  np.testing.assert_allclose(rgb @ spectrum.decorrelation_matrix(), t, atol=1e-5)


def test_resize_spectrum_keeps_cycles_per_pixel():
  def analytic(s):
    f = np.sqrt(np.fft.fftfreq(s)[:, None] ** 2 + np.fft.rfftfreq(s)[None, :] ** 2)
    return np.broadcast_to(1.0 / np.maximum(f, 1.0 / 64) ** 1.0, (3,) + f.shape)
  up = spectrum.resize_spectrum(analytic(64), 128, 128)
  assert up.shape == (3, 128, 65)
  # bins shared by both grids are exact; the rest interpolate a smooth function closely
  np.testing.assert_allclose(up[:, ::2, ::2], analytic(64), rtol=1e-5)
  np.testing.assert_allclose(up[:, 4:60, 4:60], analytic(128)[:, 4:60, 4:60], rtol=0.05)
  np.testing.assert_allclose(spectrum.resize_spectrum(up, 64, 64), analytic(64), rtol=1e-5)


def test_shipped_default_spectrum():
  assert spectrum.DEFAULT_PATH.stat().st_size < 256 * 1024
  m = spectrum.load_spectrum()
  assert m.shape == (3, 256, 129) and np.all(m > 0)
  f, prof = spectrum.radial_profile(m, 8)
  assert np.all(np.diff(prof) < 0)  # natural images: power falls with frequency
  slope = np.polyfit(np.log(f), np.log(prof), 1)[0]
  assert -2.0 < slope < -0.8, slope


@pytest.fixture(scope="module")
def net():
  return models.load("googlenet_bvlc", random_init=0)


def small_maco(**kw):
  c = featvis.get_config("maco")
  c.size, c.model_size, c.crops, c.crop_chunk, c.steps = 32, 40, 2, 1, 3
  for k, v in kw.items():
    c[k] = v
  return c


def test_render_deterministic_batched_and_traced_once(net, monkeypatch):
  calls = []
  orig = maco.Engine.step

  def counting(self, *a, **k):
    calls.append(1)
    return orig(self, *a, **k)

  monkeypatch.setattr(maco.Engine, "step", counting)
  units = ["conv2d2_pre_relu:3", "conv2d2_pre_relu:7", "mixed3a_pre_relu:5"]
  cfg = small_maco()
  a = featvis.render(net, units, cfg, progress=True)   # several chunks
  b = featvis.render(net, units, cfg, progress=False)  # one chunk, same program
  assert len(calls) == 1, "the MACO step was traced more than once"
  np.testing.assert_array_equal(a["images"], b["images"])
  assert a["images"].shape == (3, 1, 32, 32, 3) and a["transparency"].shape == (3, 1, 32, 32, 3)
  assert np.all(a["transparency"] >= 0) and a["transparency"].sum() > 0
  c = featvis.render(net, units, cfg, key=jax.random.PRNGKey(7), progress=False)
  assert np.abs(c["images"] - a["images"]).max() > 1e-3
  alone = featvis.render(net, units[2:], cfg, progress=False)
  np.testing.assert_allclose(alone["images"][0], a["images"][2], atol=1e-4)


def test_maco_raises_the_unit(net):
  cfg = small_maco(steps=12, crops=4, crop_chunk=2)
  units = ["conv2d2_pre_relu:3", "mixed3a_pre_relu:5"]
  start = featvis.render(net, units, small_maco(steps=0), progress=False)
  out = featvis.render(net, units, cfg, progress=False)
  assert np.all(out["activation"] > start["activation"])


def test_bad_config(net):
  with pytest.raises(ValueError, match="multiple of"):
    featvis.render(net, ["conv2d2_pre_relu:3"], small_maco(crops=3, crop_chunk=2))
  with pytest.raises(ValueError, match="even"):
    featvis.render(net, ["conv2d2_pre_relu:3"], small_maco(size=33))
  with pytest.raises(spectrum.SpectrumError, match="not found"):
    featvis.render(net, ["conv2d2_pre_relu:3"], small_maco(spectrum="/no/such.npz"))


def test_spectrum_cli(tmp_path):
  import subprocess
  import sys
  from PIL import Image
  for i, im in enumerate(one_over_f_images(3, 40, np.random.default_rng(1))):
    Image.fromarray((im * 255).round().astype(np.uint8)).save(tmp_path / f"n{i}.png")
  out = tmp_path / "spec.npz"

  def cli(*args):
    return subprocess.run([sys.executable, "-m", "cv_jax.cli", "spectrum", *args],
                          capture_output=True, text=True, timeout=300)

  r = cli(f"--source={tmp_path}", "--size=32", f"--out={out}")
  assert r.returncode == 0, r.stderr
  m = spectrum.load_spectrum(out)
  want = spectrum.compute_spectrum(tmp_path, 32)
  np.testing.assert_allclose(m, want, rtol=2e-4)
  r = cli(f"--source={tmp_path / 'nope'}")
  err = [line for line in r.stderr.splitlines() if line.strip()]
  assert r.returncode == 1 and len(err) == 1, r.stderr
  assert err[0].startswith("cv-jax spectrum: error: image folder") and "does not exist" in err[0]
