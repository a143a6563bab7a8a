"""cv_jax.occlusion against independent references: direct occlude-and-run loops, NumPy means,
scipy's Gaussian filter, the paper's grid constants."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cv_jax import models
from cv_jax import occlusion as O


def _direct(model, image, layer, channels):
  """The unit activations of one image: one plain forward pass, spatial mean in NumPy."""
  y = np.asarray(model(np.asarray(image)[None], [layer])[layer], np.float64)
  return y.mean(axis=(1, 2))[0, channels]


def _reference_occlude(image, r, c, s):
  """The paper's occlude(): img[r:r+s, c:c+s] = img[r:r+s, c:c+s].mean(axis=(0, 1))."""
  out = np.array(image, copy=True)
  out[r:r + s, c:c + s, :] = image[r:r + s, c:c + s, :].mean(axis=(0, 1))
  return out


@pytest.fixture(scope="module")
def photo(sample_images):
  from cv_jax.data import load_image
  return load_image(sample_images[9])  # 224 x 224


@pytest.fixture(scope="module")
def inception_random():
  return models.load("inceptionv1", random_init=0)


def test_paper_grid():
  assert O.occluder_size(0.4, (224, 224)) == 90
  assert O.occluder_size(90, (224, 224)) == 90
  s = O.occluder_starts(224, 90, 2)
  assert len(s) == 68 and s[0] == 0 and s[-1] == 134 and len(s) ** 2 == 4624
  assert len(O.occluder_starts(224, 112, 2)) == 57
  with pytest.raises(ValueError):
    O.occluder_size(300, (224, 224))
  with pytest.raises(ValueError):
    O.occluder_starts(224, 90, 0)


def test_patch_means_and_occlude_equal_direct_mean():
  rng = np.random.default_rng(0)
  img = rng.random((37, 41, 3), dtype=np.float32)
  rs, cs = O.occluder_starts(37, 9, 3), O.occluder_starts(41, 9, 3)
  pm = O.patch_means(img, 9, rs, cs)
  for i, r in enumerate(rs):
    for j, c in enumerate(cs):
      np.testing.assert_allclose(pm[i, j], img[r:r + 9, c:c + 9].astype(np.float64).mean((0, 1)),
                                 rtol=1e-6, atol=1e-7)
  out = O.occlude(img, 6, 12, 9)
  np.testing.assert_allclose(out, _reference_occlude(img, 6, 12, 9), rtol=1e-6, atol=1e-7)
  assert np.array_equal(out[:6], img[:6]) and np.array_equal(out[:, 21:], img[:, 21:])
  import jax.numpy as jnp
  np.testing.assert_allclose(np.asarray(O.occlude(jnp.asarray(img), 6, 12, 9)), out, atol=1e-6)
  np.testing.assert_array_equal(O.occlude(img, 0, 0, 5, fill=0.25)[:5, :5], 0.25)
  np.testing.assert_array_equal(O.occlude(img, 0, 0, 5, fill=(1, 0, 0.5))[2, 3], [1, 0, 0.5])
  with pytest.raises(ValueError, match="does not fit"):
    O.occlude(img, 30, 0, 9)
  with pytest.raises(ValueError, match="unknown fill"):
    O.occlude(img, 0, 0, 9, fill="grey")


def test_extreme_positions_ties_first_row_major():
  m = np.zeros((4, 5))
  m[1, 3] = m[2, 0] = 7.0   # two maxima: (1, 3) comes first row-major
  m[3, 1] = m[0, 4] = -2.0  # two minima: (0, 4) first
  assert O.extreme_positions(m) == ((0, 4), (1, 3))
  assert O.extreme_positions(np.ones((3, 3))) == ((0, 0), (0, 0))
  with pytest.raises(ValueError):
    O.extreme_positions(np.ones(5))


def _check_against_loop(model, image, layer, channels, size, stride, n_check, seed, **kw):
  res = O.occlusion_maps(model, image, layer, channels, size=size, stride=stride, **kw)
  rs, cs = res.starts
  assert res.maps.shape == (len(rs), len(cs), len(channels))
  np.testing.assert_allclose(res.base, _direct(model, image, layer, channels), rtol=1e-5, atol=1e-4)
  rng = np.random.default_rng(seed)
  picks = [(0, 0), (len(rs) - 1, len(cs) - 1)] + [
      (int(rng.integers(len(rs))), int(rng.integers(len(cs)))) for _ in range(n_check)]
  for i, j in picks:
    want = _direct(model, _reference_occlude(image, rs[i], cs[j], res.size), layer, channels)
    scale = np.abs(want).max() + 1.0
    np.testing.assert_allclose(res.maps[i, j], want, rtol=0, atol=2e-5 * scale)
  return res


def test_bvlc_maps_equal_direct_loop_small(bvlc_model, photo):
  img = photo[60:140, 70:150]  # 80 x 80 crop of a real photo
  channels = [0, 63, 64 + 10, 64 + 128 + 20, 255]  # 1x1, 3x3, 5x5, pool branches of mixed3a
  _check_against_loop(bvlc_model, img, "mixed3a_pre_relu", channels, size=30, stride=5,
                      n_check=4, seed=1)


def test_bvlc_maps_equal_direct_loop_224_paper_grid(bvlc_model, photo):
  # Every start of this grid is on the paper's stride-2 grid (0, 44, 88, 132).
  units = ["mixed4a_pre_relu:257", "mixed4a/pool:22"]
  res = O.occlusion_maps(bvlc_model, photo, "mixed4a_pre_relu", units, size=0.4, stride=44)
  assert res.size == 90 and list(res.starts[0]) == [0, 44, 88, 132]
  channels = [u.channel for u in res.units]
  for i, j in [(0, 0), (1, 3), (3, 2)]:
    r, c = res.starts[0][i], res.starts[1][j]
    want = _direct(bvlc_model, _reference_occlude(photo, r, c, 90), "mixed4a_pre_relu", channels)
    np.testing.assert_allclose(res.maps[i, j], want, rtol=0, atol=2e-5 * (np.abs(want).max() + 1))
  assert res.flat(0).shape == (16,) and res.flat(0)[4 * 1 + 3] == res.maps[1, 3, 0]
  allv = np.append(res.maps[..., 1].ravel(), res.base[1])
  assert res.relative_difference(1) == pytest.approx((allv.max() - allv.min()) / res.base[1])


def test_inceptionv1_maps_equal_direct_loop(inception_random):
  rng = np.random.default_rng(3)
  img = rng.random((64, 64, 3), dtype=np.float32)
  _check_against_loop(inception_random, img, "mixed3a_pre_relu", [1, 100, 255], size=20,
                      stride=7, n_check=3, seed=2)


def test_chunking_and_progress_do_not_change_results(inception_random):
  rng = np.random.default_rng(4)
  img = rng.random((48, 48, 3), dtype=np.float32)
  kw = dict(size=16, stride=4)
  a = O.occlusion_maps(inception_random, img, "conv2d2_pre_relu", None, chunk=7, **kw)
  b = O.occlusion_maps(inception_random, img, "conv2d2_pre_relu", None, chunk=100, **kw)
  c = O.occlusion_maps(inception_random, img, "conv2d2_pre_relu", None, chunk=5, progress=True, **kw)
  assert a.maps.shape == (9, 9, 192)
  np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(a.maps, c.maps, rtol=1e-5, atol=1e-5)


def test_constant_and_image_fill(inception_random):
  rng = np.random.default_rng(5)
  img = rng.random((40, 40, 3), dtype=np.float32)
  other = rng.random((40, 40, 3), dtype=np.float32)
  for fill in (0.5, (0.1, 0.2, 0.3), other):
    res = O.occlusion_maps(inception_random, img, "conv2d0_pre_relu", [0, 5], size=12, stride=14,
                           fill=fill)
    r, c = res.starts[0][1], res.starts[1][2]
    want = _direct(inception_random, O.occlude(img, r, c, 12, fill), "conv2d0_pre_relu", [0, 5])
    np.testing.assert_allclose(res.maps[1, 2], want, rtol=1e-5, atol=1e-4)


def test_gaussian_kernel_and_blur_match_scipy():
  from scipy import ndimage
  k = O.gaussian_kernel(21, 0)  # OpenCV's sigma rule: 0.3 * (10 - 1) + 0.8 = 3.5
  np.testing.assert_allclose(k, O.gaussian_kernel(21, 3.5))
  x = np.arange(21) - 10
  np.testing.assert_allclose(k, np.exp(-x**2 / 24.5) / np.exp(-x**2 / 24.5).sum())
  rng = np.random.default_rng(6)
  img = rng.random((50, 37, 3), dtype=np.float32)
  # scipy 'mirror' = reflect-101; radius int(truncate * sigma + 0.5) = 10.
  ref = ndimage.gaussian_filter(img.astype(np.float64), sigma=(3.5, 3.5, 0), mode="mirror",
                                truncate=10 / 3.5)
  np.testing.assert_allclose(np.asarray(O.gaussian_blur(img)), ref, atol=1e-5)


def test_gaussian_blur_matches_opencv():
  cv2 = pytest.importorskip("cv2")
  img = np.random.default_rng(7).random((60, 45, 3), dtype=np.float32)
  np.testing.assert_allclose(np.asarray(O.gaussian_blur(img)), cv2.GaussianBlur(img, (21, 21), 0),
                             atol=1e-5)


def test_blur_reference(inception_random):
  rng = np.random.default_rng(8)
  img = rng.random((48, 48, 3), dtype=np.float32)
  unit = "mixed3a_pre_relu:7"
  out, (r, c), act = O.blur_reference(inception_random, img, unit, size=20, stride=14)
  blurred = np.asarray(O.gaussian_blur(img))
  assert (r, c) in {(a, b) for a in (0, 14, 28) for b in (0, 14, 28)}
  np.testing.assert_allclose(out[r:r + 20, c:c + 20], img[r:r + 20, c:c + 20])
  mask = np.ones((48, 48), bool)
  mask[r:r + 20, c:c + 20] = False
  np.testing.assert_allclose(out[mask], blurred[mask])
  # Direct loop over the 9 windows: the chosen one is the first maximum.
  acts = []
  for a in (0, 14, 28):
    for b in (0, 14, 28):
      x = blurred.copy()
      x[a:a + 20, b:b + 20] = img[a:a + 20, b:b + 20]
      acts.append(_direct(inception_random, x, "mixed3a_pre_relu", [7])[0])
  best = int(np.argmax(acts))
  assert (r, c) == (14 * (best // 3), 14 * (best % 3))
  np.testing.assert_allclose(act, acts[best], rtol=1e-5, atol=1e-4)


def test_bad_names_and_inputs(inception_random):
  img = np.zeros((40, 40, 3), np.float32)
  with pytest.raises(ValueError, match="unknown layer"):
    O.occlusion_maps(inception_random, img, "mixed9z_pre_relu", size=10, stride=10)
  with pytest.raises(ValueError, match="out of range"):
    O.occlusion_maps(inception_random, img, "mixed3a_pre_relu", [9999], size=10, stride=10)
  with pytest.raises(ValueError, match="not in layer"):
    O.occlusion_maps(inception_random, img, "mixed3a_pre_relu", ["mixed3b/pool:1"], size=10)
  with pytest.raises(ValueError, match="cannot parse unit"):
    O.occlusion_maps(inception_random, img, None, ["mixed3a-pool-1"], size=10)
  with pytest.raises(ValueError, match="shape"):
    O.occlusion_maps(inception_random, np.zeros((40, 40)), "conv2d0", size=10)
  with pytest.raises(ValueError, match="NaN"):
    O.occlusion_maps(inception_random, np.full((40, 40, 3), np.nan), "conv2d0", size=10)
  with pytest.raises(ValueError, match="does not fit"):
    O.occlusion_maps(inception_random, img, "conv2d0", size=50)
  with pytest.raises(ValueError, match="unknown fill"):
    O.occlusion_maps(inception_random, img, "conv2d0", size=10, fill="gray")


def test_corrupt_and_missing_images(tmp_path):
  bad = tmp_path / "broken.jpg"
  bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
  with pytest.raises(ValueError, match="broken.jpg"):
    O.load_query(bad)
  from PIL import Image
  good = tmp_path / "cut.jpg"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(good)
  data = good.read_bytes()
  good.write_bytes(data[: len(data) // 2])  # truncated file
  with pytest.raises(ValueError, match="cut.jpg"):
    O.load_query(good)
  with pytest.raises(ValueError, match="not found"):
    O.load_query(tmp_path / "nope.jpg")


def test_forward_flops_closed_form():
  m = models.load("googlenet_bvlc", random_init=0)
  # conv2d0: 112*112 outputs * 7*7*3 * 64, conv2d1: 56*56 * 64*64, conv2d2: 56*56 * 9*64*192.
  want = 2 * (112 * 112 * 147 * 64 + 56 * 56 * 64 * 64 + 56 * 56 * 576 * 192)
  assert O.forward_flops(m, "conv2d2_pre_relu") == want


def test_cli_writes_maps_and_figures(tmp_path, bvlc_npz, sample_images):
  cmd = [sys.executable, "-m", "cv_jax.occlusion", f"--image={sample_images[3]}",
         "--units=mixed3a/3x3:10,conv2d2_pre_relu:5", f"--weights={bvlc_npz}",
         f"--output={tmp_path}", "--size=0.4", "--stride=40"]
  p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  files = sorted(f.name for f in tmp_path.iterdir())
  stem = sample_images[3].stem
  assert f"{stem}_occlusion.npz" in files and sum(f.endswith(".png") for f in files) == 2
  z = np.load(tmp_path / f"{stem}_occlusion.npz")
  assert z["maps"].shape == (4, 4, 2) and list(z["units"]) == ["mixed3a_pre_relu:74",
                                                               "conv2d2_pre_relu:5"]
  bad = subprocess.run(cmd[:4] + ["--units=mixed3a/3x3:999", f"--weights={bvlc_npz}",
                                  f"--output={tmp_path}"], capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode == 1 and "out of range" in bad.stderr


@pytest.mark.parametrize("layer,fill", [("mixed3b_pre_relu", "mean"), ("mixed4a", "other")])
def test_incremental_equals_plain_forward(inception_random, layer, fill):
  """The dirty-window pass against full forward passes: non-square image, odd sizes, post-ReLU,
  pooling before mixed4a, image fill."""
  rng = np.random.default_rng(9)
  img = rng.random((70, 83, 3), dtype=np.float32)
  if fill == "other":
    fill = rng.random((70, 83, 3), dtype=np.float32)
  kw = dict(size=23, stride=9, fill=fill, chunk=16)
  a = O.occlusion_maps(inception_random, img, layer, [0, 3, 200], incremental=True, **kw)
  b = O.occlusion_maps(inception_random, img, layer, [0, 3, 200], incremental=False, **kw)
  assert a.maps.shape == (6, 7, 3)
  np.testing.assert_allclose(a.maps, b.maps, rtol=0, atol=2e-5 * (np.abs(b.maps).max() + 1))
  np.testing.assert_allclose(a.base, b.base, rtol=1e-5, atol=1e-5)


def test_bvlc_plain_forward_equals_direct_loop(bvlc_model, photo):
  img = photo[100:172, 30:102]
  _check_against_loop(bvlc_model, img, "mixed3b_pre_relu", [5, 300], size=24, stride=8,
                      n_check=2, seed=4, incremental=False)
