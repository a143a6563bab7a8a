"""Gradients of the hand-written VJPs (convolution, max pooling, LRN) against PyTorch autograd.

`layers.conv2d`, `layers.max_pool` and `layers.lrn` carry custom VJPs (the input gradient as a
forward-style convolution, phases for strides; dense ops instead of XLA's select-and-scatter;
closed-form LRN gradient). Both must give PyTorch's gradient: for max
pooling exactly where windows tie (integer-valued inputs make most windows tie), i.e. the
cotangent goes to the first maximal cell of each window in row-major order, as PyTorch's
`max_pool2d` and XLA's `select_and_scatter` do.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cv_jax.models import layers as L


def _torch_vjp(fn, x: np.ndarray, ct: np.ndarray) -> np.ndarray:
  """PyTorch input gradient of sum(fn(x) * ct), NHWC in and out."""
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  y = fn(xt)
  (g,) = torch.autograd.grad((y * torch.from_numpy(ct.transpose(0, 3, 1, 2).copy())).sum(), xt)
  return g.numpy().transpose(0, 2, 3, 1)


def _jax_vjp(fn, x: np.ndarray, ct: np.ndarray) -> np.ndarray:
  y, vjp = jax.vjp(fn, jnp.asarray(x))
  assert y.shape == ct.shape
  return np.asarray(vjp(jnp.asarray(ct))[0])


# (shape NHWC, kernel, stride, mode, pad): every pooling the two networks use, plus odd sizes.
POOLS = [((2, 15, 15, 3), 3, 2, "caffe", 0), ((2, 14, 16, 4), 3, 2, "caffe", 0),
         ((2, 9, 8, 5), 3, 1, "caffe", 1), ((2, 15, 15, 3), 3, 2, "same", 0),
         ((2, 16, 13, 3), 3, 2, "same", 0), ((2, 9, 9, 2), 3, 1, "same", 0),
         ((1, 11, 10, 2), 5, 3, "same", 0), ((1, 8, 8, 2), 2, 2, "same", 0),
         # larger maps; unpadded (strided views) and padded (separable reduce-windows) pools
         ((1, 40, 36, 2), 3, 2, "caffe", 0), ((1, 37, 33, 2), 3, 2, "same", 0),
         ((1, 41, 39, 3), 3, 2, "caffe", 0), ((1, 12, 12, 2), 4, 4, "caffe", 0)]


def _torch_pool(k, s, mode, pad, hw):
  if mode == "caffe":
    return lambda t: F.max_pool2d(t, k, s, pad, ceil_mode=True)
  (pt, pb), (pl, pr) = [L.same_padding(n, k, s) for n in hw]
  return lambda t: F.max_pool2d(F.pad(t, (pl, pr, pt, pb), value=-np.inf), k, s)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape,k,s,mode,pad", POOLS)
def test_max_pool_gradient_matches_torch(shape, k, s, mode, pad, ties):
  rng = np.random.default_rng(sum(shape) + k + s)
  x = rng.standard_normal(shape).astype(np.float32)
  if ties:
    x = np.round(x).astype(np.float32)  # values in {-3..3}: most windows have tied maxima
  pads = L.pool_padding(jnp.asarray(x), k, s, mode, pad)
  fwd = _torch_pool(k, s, mode, pad, shape[1:3])
  y = L.max_pool(jnp.asarray(x), k, s, pads)
  np.testing.assert_array_equal(np.asarray(y), fwd(torch.from_numpy(
      x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1))
  ct = rng.standard_normal(y.shape).astype(np.float32)
  got = _jax_vjp(lambda v: L.max_pool(v, k, s, pads), x, ct)
  want = _torch_vjp(fwd, x, ct)
  # Same routing; only the order of adding overlapping windows' cotangents may differ.
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  if ties:  # the routing itself: which input cells receive anything
    np.testing.assert_array_equal(got != 0, want != 0)


def test_max_pool_gradient_under_vmap_and_jit():
  x = np.round(np.random.default_rng(0).standard_normal((3, 2, 10, 10, 4))).astype(np.float32)
  pads = L.pool_padding(jnp.asarray(x[0]), 3, 2, "caffe")
  assert pads[0][1] == 1  # a ceil-mode window hangs over the bottom/right edge

  def loss(v):
    return jnp.sum(jnp.sin(L.max_pool(v, 3, 2, pads)))

  got = jax.jit(jax.vmap(jax.grad(loss)))(jnp.asarray(x))
  fwd = _torch_pool(3, 2, "caffe", 0, (10, 10))
  for i in range(3):
    want = _torch_vjp(lambda t: torch.sin(fwd(t)), x[i], np.ones((2, 5, 5, 4), np.float32))
    np.testing.assert_allclose(np.asarray(got[i]), want, rtol=1e-6, atol=1e-6)


# (size, alpha per sum, beta, bias): Caffe/BVLC, Lucent's constants, TF's, and a generic beta.
LRNS = [(5, 1e-4 / 5, 0.75, 1.0), (9, 1e-4 / 9, 0.5, 1.0), (11, 1e-4, 0.5, 2.0),
        (4, 1e-3 / 4, 0.6, 1.5)]


@pytest.mark.parametrize("size,alpha,beta,bias", LRNS)
def test_lrn_value_and_gradient_match_torch(size, alpha, beta, bias):
  rng = np.random.default_rng(size)
  x = (40 * rng.standard_normal((2, 5, 4, 24))).astype(np.float32)  # large: the norm matters
  ct = rng.standard_normal(x.shape).astype(np.float32)

  def fwd(t):  # torch's alpha is per mean over `size` channels
    return F.local_response_norm(t, size, alpha=alpha * size, beta=beta, k=bias)

  y = L.lrn(jnp.asarray(x), size, alpha, beta, bias)
  want_y = fwd(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(y), want_y, rtol=2e-6, atol=1e-6)
  got = _jax_vjp(lambda v: L.lrn(v, size, alpha, beta, bias), x, ct)
  want = _torch_vjp(fwd, x, ct)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.abs(got - ct * np.asarray(y) / x).max() > 1e-3  # the normaliser's term is non-trivial


# (input NHWC, kernel, stride, padding): every convolution of the two networks' kinds (Caffe
# symmetric pads, TF "SAME" with asymmetric pads at odd sizes, the 7x7 stride-2 stems), plus
# strides and pads that leave input cells outside every window, and pads wider than the kernel.
CONVS = [((2, 15, 15, 3), 7, 2, [(3, 3), (3, 3)]), ((2, 16, 16, 3), 7, 2, "SAME"),
         ((2, 15, 14, 3), 7, 2, "SAME"), ((1, 9, 9, 4), 3, 1, [(1, 1), (1, 1)]),
         ((1, 9, 8, 4), 5, 1, "SAME"), ((1, 10, 10, 4), 1, 1, "VALID"),
         ((1, 12, 11, 3), 3, 2, "SAME"), ((1, 13, 13, 2), 3, 3, [(1, 1), (1, 1)]),
         ((1, 8, 8, 2), 3, 1, [(3, 3), (3, 3)]), ((1, 11, 11, 2), 4, 2, [(0, 1), (2, 0)]),
         ((1, 10, 10, 2), 2, 2, "VALID"), ((1, 12, 12, 2), 3, 2, "VALID")]


@pytest.mark.parametrize("shape,k,s,padding", CONVS)
def test_conv_gradients_match_torch(shape, k, s, padding):
  rng = np.random.default_rng(sum(shape) + 7 * k + s)
  x = rng.standard_normal(shape).astype(np.float32)
  w = rng.standard_normal((k, k, shape[-1], 5)).astype(np.float32)
  b = rng.standard_normal(5).astype(np.float32)
  if padding == "SAME":
    pads = [L.same_padding(shape[i + 1], k, s) for i in range(2)]
  elif padding == "VALID":
    pads = [(0, 0), (0, 0)]
  else:
    pads = padding
  (pt, pb), (pl, pr) = pads
  wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  yt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, torch.from_numpy(b), s)
  y, vjp = jax.vjp(lambda v, k_: L.conv2d(v, k_, jnp.asarray(b), s, padding),
                   jnp.asarray(x), jnp.asarray(w))
  np.testing.assert_allclose(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1),
                             rtol=1e-5, atol=1e-5)
  ct = rng.standard_normal(y.shape).astype(np.float32)
  gx, gw = torch.autograd.grad((yt * torch.from_numpy(ct.transpose(0, 3, 1, 2).copy())).sum(),
                               (xt, wt))
  got_x, got_w = vjp(jnp.asarray(ct))
  np.testing.assert_allclose(np.asarray(got_x), gx.numpy().transpose(0, 2, 3, 1),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_w), gw.numpy().transpose(2, 3, 1, 0),
                             rtol=1e-5, atol=1e-4)
