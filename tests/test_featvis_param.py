"""featvis parameterisations against NumPy references built from Lucid's and Lucent's formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax.featvis import param as P


def test_normalised_colour_matrix_values():
  # Lucid's colour decorrelation: max column norm 0.4619524 and the normalised matrix.
  assert P.MAX_NORM_SVD_SQRT == pytest.approx(0.4619524, abs=1e-6)
  expected = np.array([[0.56282854, 0.19482528, 0.04329450], [0.58447580, 0.0, -0.10823626],
                       [0.58447580, -0.19482528, 0.06494176]])
  np.testing.assert_allclose(P.COLOR_CORRELATION_NORMALIZED, expected, atol=1e-6)


def test_decorrelate_is_matrix_per_pixel():
  t = np.random.RandomState(0).randn(2, 3, 4, 3).astype(np.float32)
  ref = np.einsum("ij,bhwj->bhwi", P.COLOR_CORRELATION_NORMALIZED, t)
  np.testing.assert_allclose(P.decorrelate_color(jnp.asarray(t)), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("h,w", [(8, 8), (6, 10), (7, 9), (9, 5)])
def test_fft_scale_closed_form(h, w):
  s = P.fft_scale(h, w)
  assert s.shape == (h, w // 2 + (2 if w % 2 else 1))
  assert s[0, 0] == pytest.approx(max(h, w))          # DC: 1 / (1 / max(h, w))
  fy, fx = np.fft.fftfreq(h)[1], np.fft.fftfreq(w)[1]
  assert s[1, 1] == pytest.approx(1 / np.hypot(fx, fy), rel=1e-6)


def _spec(b, h, w, seed=0):
  wf = w // 2 + (2 if w % 2 else 1)
  return np.random.RandomState(seed).randn(b, 3, h, wf, 2).astype(np.float32) * 0.01


def _numpy_fft_image(spec, h, w, flavor):
  freqs = np.sqrt(np.fft.fftfreq(w)[: spec.shape[3]][None] ** 2 + np.fft.fftfreq(h)[:, None] ** 2)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w))
  c = (spec[..., 0] + 1j * spec[..., 1]).astype(np.complex128) * scale
  if w % 2 == 0:
    img = np.fft.irfft2(c, s=(h, w), norm="ortho")
  elif flavor == "lucid":
    # TF irfft2d: fft_length inferred 2 (n - 1) = w + 1, normalised by h (w + 1); scale * sqrt(hw).
    img = np.fft.irfft2(c * np.sqrt(h * w), s=(h, w + 1))[..., :w]
  else:
    img = np.fft.irfft2(c[..., : w // 2 + 1], s=(h, w), norm="ortho")
  return np.transpose(img / 4.0, (0, 2, 3, 1))


@pytest.mark.parametrize("h,w", [(8, 8), (6, 10), (7, 9), (9, 5), (16, 12)])
@pytest.mark.parametrize("flavor", ["lucid", "lucent"])
def test_fft_image_matches_numpy(h, w, flavor):
  spec = _spec(2, h, w)
  got = np.asarray(P.fft_to_image(jnp.asarray(spec), h, w, flavor=flavor))
  np.testing.assert_allclose(got, _numpy_fft_image(spec, h, w, flavor), rtol=1e-4, atol=1e-7)


def test_fft_flavors_agree_on_even_sizes_and_differ_on_odd():
  spec = jnp.asarray(_spec(1, 8, 12))
  np.testing.assert_allclose(P.fft_to_image(spec, 8, 12, flavor="lucid"),
                             P.fft_to_image(spec, 8, 12, flavor="lucent"), atol=1e-7)
  spec = jnp.asarray(_spec(1, 7, 9))
  assert not np.allclose(P.fft_to_image(spec, 7, 9, flavor="lucid"),
                         P.fft_to_image(spec, 7, 9, flavor="lucent"), atol=1e-6)


def test_fft_dc_only_gives_constant_image():
  h = w = 8
  spec = np.zeros((1, 3, h, w // 2 + 1, 2), np.float32)
  spec[0, 1, 0, 0, 0] = 0.5
  img = np.asarray(P.fft_to_image(jnp.asarray(spec), h, w))
  # ortho irfft of a DC value v: v / sqrt(hw); the DC scale is max(h, w); then / 4.
  np.testing.assert_allclose(img[0, :, :, 1], 0.5 * 8 / 8 / 4, rtol=1e-6)
  np.testing.assert_allclose(img[0, :, :, [0, 2]], 0.0, atol=1e-7)


def test_image_param_init_and_range():
  prm = P.image_param(16, batch=3)
  p = prm.init(jax.random.PRNGKey(0))
  assert p.shape == (3, 3, 16, 9, 2)
  assert abs(float(jnp.std(p)) - 0.01) < 0.002
  img = prm(p)
  assert img.shape == (3, 16, 16, 3)
  assert float(jnp.min(img)) > 0.4 and float(jnp.max(img)) < 0.6   # starts near grey
  ref = 1 / (1 + np.exp(-np.einsum("ij,bhwj->bhwi", P.COLOR_CORRELATION_NORMALIZED,
                                   _numpy_fft_image(np.asarray(p), 16, 16, "lucid"))))
  np.testing.assert_allclose(img, ref, rtol=1e-5, atol=1e-6)
  pix = P.image_param(10, batch=2, fft=False, decorrelate=False)
  q = pix.init(jax.random.PRNGKey(1))
  assert q.shape == (2, 10, 10, 3)
  np.testing.assert_allclose(pix(q), 1 / (1 + np.exp(-np.asarray(q))), rtol=1e-6)


def test_soft_linf_clip_forward_and_gradient():
  x = jnp.asarray([-2.0, -0.5, 0.3, 1.0, 3.0])
  np.testing.assert_allclose(P.constrain_l_inf(x), [-1.0, -0.5, 0.3, 1.0, 1.0])
  g = jnp.asarray([1.0, 1.0, -1.0, 2.0, -3.0])
  _, vjp = jax.vjp(P.constrain_l_inf, x)
  # Lucid: pass g, except where |x| >= 1 and x * g > 0 (then 0).
  np.testing.assert_allclose(vjp(g)[0], [1.0, 1.0, -1.0, 0.0, -3.0])
  t = jnp.asarray(np.random.RandomState(0).randn(1, 2, 2, 3).astype(np.float32))
  ref = np.einsum("ij,bhwj->bhwi", P.COLOR_CORRELATION_NORMALIZED, np.asarray(t)) + P.COLOR_MEAN
  ref = np.clip(2 * ref - 1, -1, 1) / 2 + 0.5
  np.testing.assert_allclose(P.to_valid_rgb(t, True, sigmoid=False), ref, rtol=1e-5, atol=1e-6)


def test_bad_size_raises():
  with pytest.raises(ValueError):
    P.image_param(0)
  with pytest.raises(ValueError):
    P.fft_to_image(jnp.zeros((1, 3, 4, 3, 2)), 4, 4, flavor="tf")
