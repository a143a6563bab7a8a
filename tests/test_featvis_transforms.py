"""featvis transforms against independent NumPy / PyTorch implementations, same draws."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax.featvis import transform as T

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _img(b=2, h=12, w=12, seed=0):
  return np.random.RandomState(seed).rand(b, h, w, 3).astype(np.float32)


def _t(x):  # NHWC numpy -> NCHW torch
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _n(t):  # NCHW torch -> NHWC numpy
  return t.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_matches_torch(mode):
  x = _img()
  got = T.pad(3, mode, 0.5)(jnp.asarray(x))
  ref = F.pad(_t(x), (3, 3, 3, 3), mode=mode, **({"value": 0.5} if mode == "constant" else {}))
  np.testing.assert_allclose(got, _n(ref), atol=1e-7)


def test_lucid_jitter_is_a_crop():
  x = _img(h=13, w=11)
  t = T.jitter(4, "lucid")
  got = np.asarray(jax.jit(t.__call__)(jnp.asarray(x), jnp.asarray([3, 1])))
  np.testing.assert_array_equal(got, x[:, 3:3 + 9, 1:1 + 7])
  draws = np.stack([np.asarray(t.draw(jax.random.PRNGKey(i))) for i in range(300)])
  assert draws.min() == 0 and draws.max() == 4          # offsets 0..d inclusive


def test_lucent_jitter_is_a_translate():
  x = _img()
  t = T.jitter(5, "lucent")
  got = np.asarray(t(jnp.asarray(x), jnp.asarray([2, 3])))
  ref = np.zeros_like(x)
  ref[:, 2:, 3:] = x[:, :-2, :-3]                       # content moves down 2, right 3; zero fill
  np.testing.assert_allclose(got, ref, atol=1e-6)
  draws = np.stack([np.asarray(t.draw(jax.random.PRNGKey(i))) for i in range(300)])
  assert draws.min() == 0 and draws.max() == 4          # 0..d-1


def test_legacy_kornia_translate_matches_grid_sample():
  x = _img(b=1, h=10, w=10)
  got = np.asarray(T.Jitter(4, "lucent", legacy_kornia=True)(jnp.asarray(x), jnp.asarray([1, 3])))
  # kornia <= 0.4.1: shift d * W / (W - 1); reference by torch grid_sample at those pixel coords.
  h = w = 10
  ys, xs = np.meshgrid(np.arange(h) - 1 * h / (h - 1), np.arange(w) - 3 * w / (w - 1), indexing="ij")
  grid = np.stack([2 * xs / (w - 1) - 1, 2 * ys / (h - 1) - 1], -1)[None].astype(np.float32)
  ref = F.grid_sample(_t(x), torch.from_numpy(grid), mode="bilinear", padding_mode="zeros",
                      align_corners=True)
  np.testing.assert_allclose(got, _n(ref), atol=1e-5)


def _tf_legacy_resize_numpy(x, oh, ow):
  """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False), written per pixel."""
  b, h, w, c = x.shape
  out = np.zeros((b, oh, ow, c), np.float64)
  sy, sx = np.float32(h) / np.float32(oh), np.float32(w) / np.float32(ow)
  for i in range(oh):
    fy = np.float32(i) * sy
    y0, y1 = int(math.floor(fy)), min(int(math.ceil(fy)), h - 1)
    ly = fy - math.floor(fy)
    for j in range(ow):
      fx = np.float32(j) * sx
      x0, x1 = int(math.floor(fx)), min(int(math.ceil(fx)), w - 1)
      lx = fx - math.floor(fx)
      top = x[:, y0, x0] + (x[:, y0, x1] - x[:, y0, x0]) * lx
      bot = x[:, y1, x0] + (x[:, y1, x1] - x[:, y1, x0]) * lx
      out[:, i, j] = top + (bot - top) * ly
  return out


@pytest.mark.parametrize("scale_idx", [0, 1, 2, 3, 4])
def test_lucid_scale_matches_tf_legacy_formula(scale_idx):
  scales = (1.0, 0.975, 1.025, 0.95, 1.05)
  x = _img(h=40, w=40)
  t = T.random_scale(scales, "lucid")
  got = np.asarray(t.apply_static(jnp.asarray(x), scale_idx))
  n = int(np.float32(scales[scale_idx]) * np.float32(40))
  assert got.shape == (2, n, n, 3)
  np.testing.assert_allclose(got, _tf_legacy_resize_numpy(x, n, n), atol=1e-5)


def test_lucid_scale_sizes_for_the_paper_and_standard_sets():
  t = T.random_scale((1.0, 0.975, 1.025, 0.95, 1.05), "lucid")
  # TF computes int(float32(s) * float32(H)): 1.025 * 240 -> 246 and 1.05 * 240 -> 251.99998 -> 251
  # (float64 arithmetic would give 245 and 252).
  assert [t.out_size((240, 240), k)[0] for k in range(5)] == [240, 234, 246, 228, 251]
  s = T.random_scale(T.STANDARD_SCALES, "lucid")
  # Lucid's random scale: 144 -> {129,132,135,138,141,144,146,149,152,155,158}
  assert [s.out_size((144, 144), k)[0] for k in range(11)] == [129, 132, 135, 138, 141, 144, 146,
                                                               149, 152, 155, 158]
  s = T.random_scale(T.STANDARD_SCALES, "lucent")
  assert [s.out_size((152, 152), k)[0] for k in range(11)] == [153, 152, 153, 152, 153, 152, 156,
                                                               159, 162, 165, 168]


@pytest.mark.parametrize("scale_idx", [0, 3, 9])
def test_lucent_scale_matches_torch(scale_idx):
  x = _img(h=20, w=20)
  t = T.random_scale(T.STANDARD_SCALES, "lucent")
  got = np.asarray(t.apply_static(jnp.asarray(x), scale_idx))
  s = T.STANDARD_SCALES[scale_idx]
  new = [math.ceil(s * 20)] * 2
  pad = max(0, math.ceil((20 - new[0]) / 2))
  ref = F.pad(F.interpolate(_t(x), size=new, mode="bilinear", align_corners=True), [pad, pad] * 2)
  np.testing.assert_allclose(got, _n(ref), atol=1e-5)


def test_upsample_matches_torch():
  x = _img(h=9, w=9)
  got = np.asarray(T.ResizeTo(224, 224)(jnp.asarray(x)))
  ref = F.interpolate(_t(x), size=(224, 224), mode="bilinear", align_corners=True)
  np.testing.assert_allclose(got, _n(ref), atol=1e-5)


@pytest.mark.parametrize("deg", [-10.0, 7.0, 90.0])
def test_lucent_rotate_matches_torch_grid_sample(deg):
  x = _img(h=15, w=15)
  got = np.asarray(T.rotate(jnp.asarray(x), deg, "lucent"))
  a = math.radians(deg)
  theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]],
                       dtype=torch.float32).repeat(2, 1, 1)
  grid = F.affine_grid(theta, (2, 3, 15, 15), align_corners=False)
  ref = F.grid_sample(_t(x), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
  np.testing.assert_allclose(got, _n(ref), atol=2e-5)


def test_rotate_90_moves_right_column_to_top_row():
  x = _img(b=1, h=9, w=9)
  got = np.asarray(T.rotate(jnp.asarray(x), 90.0, "lucent"))
  np.testing.assert_allclose(got[0, 0, :], x[0, :, -1], atol=1e-5)   # Lucent's own test


def _tf_rotate_nearest_numpy(x, deg):
  """tf.contrib.image.rotate(NEAREST) with Lucid's radians = 3.14 deg / 180, per pixel."""
  b, h, w, c = x.shape
  a = np.float32(3.14) * np.float32(deg) / np.float32(180)
  cs, sn = np.cos(a), np.sin(a)
  xo = ((w - 1) - (cs * (w - 1) - sn * (h - 1))) / 2
  yo = ((h - 1) - (sn * (w - 1) + cs * (h - 1))) / 2
  out = np.zeros_like(x)
  for y in range(h):
    for xx in range(w):
      xi = cs * xx - sn * y + xo
      yi = sn * xx + cs * y + yo
      ri, ci = int(math.copysign(math.floor(abs(yi) + 0.5), yi)), int(math.copysign(math.floor(abs(xi) + 0.5), xi))
      if 0 <= ri < h and 0 <= ci < w:
        out[:, y, xx] = x[:, ri, ci]
  return out


@pytest.mark.parametrize("deg", [-5, 3, 10])
def test_lucid_rotate_matches_tf_nearest_formula(deg):
  x = _img(h=17, w=14)
  got = np.asarray(jax.jit(lambda v: T.rotate(v, jnp.float32(deg), "lucid"))(jnp.asarray(x)))
  np.testing.assert_allclose(got, _tf_rotate_nearest_numpy(x, deg), atol=1e-7)


@pytest.mark.parametrize("size", [(8, 10), (15, 6)])
def test_crop_or_pad_to_matches_numpy(size):
  x = _img(h=11, w=9)
  got = np.asarray(T.crop_or_pad_to(*size)(jnp.asarray(x)))
  ref = np.zeros((2, size[0], size[1], 3), np.float32)
  # TF resize_image_with_crop_or_pad: centre crop offset (n - t) // 2, pad offset (t - n) // 2.
  def rng(n, t):
    if n >= t:
      return slice((n - t) // 2, (n - t) // 2 + t), slice(0, t)
    return slice(0, n), slice((t - n) // 2, (t - n) // 2 + n)
  (sy, dy), (sx, dx) = rng(11, size[0]), rng(9, size[1])
  ref[:, dy, dx] = x[:, sy, sx]
  np.testing.assert_array_equal(got, ref)


def test_pipeline_switch_equals_sequential_application():
  pipe = T.Pipeline((T.jitter(4, "lucid"), T.random_scale((1.0, 0.9, 1.1), "lucid"),
                     T.random_rotate(tuple(range(-5, 6)), "lucid"), T.jitter(2, "lucid")))
  x = jnp.asarray(_img(b=1, h=24, w=24))
  run = jax.jit(lambda x, d: pipe.run(x, d, tail=lambda y: jnp.sum(y ** 2)))
  for seed in range(4):
    d = pipe.draw(jax.random.PRNGKey(seed))
    y = pipe.transforms[0](x, d[0])
    y = pipe.transforms[1].apply_static(y, int(d[1]))
    y = pipe.transforms[3](pipe.transforms[2](y, d[2]), d[3])
    np.testing.assert_allclose(run(x, d), jnp.sum(y ** 2), rtol=1e-5)
  assert pipe.output_sizes((24, 24)) == {(16, 16), (18, 18), (20, 20)}


def test_lucent_pipeline_has_fixed_output_size():
  pipe = T.from_spec((("pad", 2), ("jitter", 2), ("scale", (0.9, 1.1)), ("upsample", 32)), "lucent")
  x = jnp.asarray(_img(b=1, h=16, w=16))
  d = pipe.draw(jax.random.PRNGKey(0))
  y = jax.jit(pipe.run)(x, d)
  assert y.shape == (1, 32, 32, 3)
  assert pipe.output_sizes((16, 16)) == {(32, 32)}
  assert T.standard_transforms("lucent").output_sizes((128, 128)) == {(224, 224)}


def test_bad_mode_raises():
  with pytest.raises(ValueError):
    T.jitter(2, "kornia")
  with pytest.raises(ValueError):
    T.from_spec((("blur", 1),))
