"""InceptionV1 (inception5h topology) against an independent PyTorch port of Lucent's network.

Random weights (no inception5h weights are available here): `models.load("inceptionv1",
random_init=0, lrn="lucent")` must equal `cv_jax.testing.torch_reference.LucentInceptionV1` at the
same weights at every named layer, and input gradients must agree for every ReLU backward variant.
`lrn="tf"` is checked against a NumPy closed form of `tf.nn.lrn`.

Input gradients are compared in float64 (JAX x64 mode against a float64 torch reference, both
from the same float32 weights). In float32 the comparison is ill-posed at deep layers: a max
pool's gradient goes to its window's maximum, and random weights leave a few windows per pool
whose two largest values differ by ~1e-6 relative, the size of float32 rounding. Which cell
wins is then decided by each library's summation order (CPU kernels, torch and XLA versions):
at mixed5b_pre_relu one near-tied maxpool10 window (gap 9.9e-7, rounding 8.3e-7) sent the
gradient to different cells and the input gradients differed by 8.4e-4 on one machine while
agreeing to 1e-6 on another. In float64 rounding (~1e-16) cannot flip such a window, so the
1e-5 tolerance checks the backward passes themselves. Forward values are continuous at ties and
are compared in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from cv_jax import models  # noqa: E402
from cv_jax.testing import torch_reference as R  # noqa: E402
from cv_jax.testing.assertions import assert_trees_rel_close  # noqa: E402

TOL = 1e-5
GRAD_LAYERS = ("conv2d2", "mixed3b_pre_relu", "mixed4a", "mixed5b_pre_relu")
# (relu, step, layers): Lucid's redirect only acts at a ReLU whose whole gradient for an image is
# zero (the target's own ReLU on a dead channel), so its cases use the two post-ReLU layers.
REDIRECT_LAYERS = ("conv2d2", "mixed4a")
RELU_CASES = [("standard", None, GRAD_LAYERS), ("lucent", None, GRAD_LAYERS),
              ("lucid", 16, REDIRECT_LAYERS), ("lucid", 17, REDIRECT_LAYERS)]


@pytest.fixture(scope="module", autouse=True)
def _precision(highest_precision):
  """Every test here compares float32 results with PyTorch at full matmul precision."""


@pytest.fixture(scope="module")
def model():
  return models.load("inceptionv1", random_init=0, lrn="lucent")


@pytest.fixture(scope="module")
def ref(model):
  return R.LucentInceptionV1(model.params(), lrn="lucent", padding="lucent")


@pytest.fixture(scope="module")
def ref64(model):
  return R.LucentInceptionV1(model.params(), lrn="lucent", padding="lucent", dtype=torch.float64)


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(1)
  # Smooth-ish random images (low-res noise upsampled) so activations are not pure noise.
  low = rng.random((2, 28, 28, 3), np.float32)
  x = np.repeat(np.repeat(low, 8, 1), 8, 2) * 0.7 + 0.3 * rng.random((2, 224, 224, 3), np.float32)
  x[0] = 0.5 + 0.2 * (x[0] - 0.5)  # low contrast: some channels dead here but alive in image 1
  return x


def test_reference_names_cover_model(model, ref, images):
  with torch.no_grad():
    out = ref(R.to_nchw(images[:1]))
  assert set(out) == set(model.layer_names)


def test_every_layer_matches_lucent(model, ref, images):
  ours = model(images)
  with torch.no_grad():
    theirs = ref(R.to_nchw(images))
  assert len(ours) == len(model.layer_names) == 150
  assert_trees_rel_close(ours, {n: R.to_nhwc(theirs[n]) for n in model.layer_names}, TOL)
  # Not vacuous: activations are non-trivial and the classes differ between images.
  assert float(jnp.std(ours["mixed5b"])) > 0.1
  assert R.rel_err(ours["softmax2_pre_activation"][0], ours["softmax2_pre_activation"][1]) > 1e-3


def _pick_channels(model, images):
  """Per gradient layer, a channel dead (all < 0) for image 0 but alive for image 1, if any."""
  pre = {l: (l if l.endswith("_pre_relu") else model.resolve(l) + "_pre_relu") for l in GRAD_LAYERS}
  acts = model(images, layers=tuple(set(pre.values())))
  chans = {}
  for l in GRAD_LAYERS:
    a = np.asarray(acts[pre[l]])
    mx = a.reshape(2, -1, a.shape[-1]).max(1)
    score = np.where(mx[0] < 0, mx[1], -np.inf)
    chans[l] = int(np.argmax(score)) if np.isfinite(score).any() else int(np.argmin(mx[0]))
  return chans


def _jax_grads(model, images, chans, relu, step, layers):
  """Input gradients of -mean(A[..., c]) per layer, computed in float64 (see module doc)."""
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), model.params())
    f = lambda x: model.apply(params, x, layers, relu=relu, step=step)
    out, vjp = jax.vjp(f, jnp.asarray(images, jnp.float64))
    assert out[layers[0]].dtype == jnp.float64
    grads = {}
    for l in layers:
      # Cotangent of the loss being minimised: -mean(A[..., c]).
      ct = {k: jnp.zeros_like(v) for k, v in out.items()}
      a = out[l]
      ct[l] = jnp.zeros_like(a).at[..., chans[l]].set(-1.0 / (a.size / a.shape[-1]))
      grads[l] = np.asarray(vjp(ct)[0])
  return grads


def _torch_grads(ref, images, chans, relu, step, layers):
  x = R.to_nchw(images, ref.dtype).requires_grad_(True)
  out = ref(x, layers, relu_mode=relu, step=step)
  grads = {}
  for l in layers:
    loss = -out[l][:, chans[l]].mean()
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    grads[l] = R.to_nhwc(g)
  return grads


def test_input_gradients_every_relu_variant(model, ref64, images):
  chans = _pick_channels(model, images)
  results = {}
  for relu, step, layers in RELU_CASES:
    ours = _jax_grads(model, images, chans, relu, step, layers)
    theirs = _torch_grads(ref64, images, chans, relu, step, layers)
    assert_trees_rel_close(ours, theirs, TOL)
    for l in layers:
      assert np.abs(theirs[l][1]).max() > 0, (relu, step, l)
    results[(relu, step)] = theirs
  # The variants are really different backward passes (so the comparisons above can fail):
  std = results[("standard", None)]
  for l in GRAD_LAYERS:
    assert R.rel_err(results[("lucent", None)][l], std[l]) > 1e-3, l
  # A channel dead for image 0 passes no standard gradient there; Lucid redirects it while
  # step <= 16 and not after. Image 1 (channel alive) keeps the ordinary ReLU gradient.
  for l in REDIRECT_LAYERS:
    assert np.abs(std[l][0]).max() == 0, f"no dead channel at {l}; redirect case untested"
    assert np.abs(results[("lucid", 16)][l][0]).max() > 0
    assert np.abs(results[("lucid", 17)][l][0]).max() == 0
    assert R.rel_err(results[("lucid", 16)][l][1], std[l][1]) <= TOL


def test_maxpool_ties_with_lucent_leak(model, ref):
  """Flat images give many all-equal (mostly all-zero) max-pool windows after ReLU.

  With Lucent's 0.1 leak, gradient reaches those zeros, so which cell of a tied window receives
  it (first in row-major order in PyTorch) decides the input gradient.
  """
  x = np.full((2, 224, 224, 3), 0.5, np.float32)
  x[1, 100:140, 60:180] = 0.9
  acts = model(x, layers=("conv2d0", "maxpool0"))
  c0 = np.asarray(acts["conv2d0"])
  win = np.lib.stride_tricks.sliding_window_view(c0[:, :111, :111], (3, 3), axis=(1, 2))[:, ::2, ::2]
  ties = (win.max(axis=(-1, -2)) == win.min(axis=(-1, -2))).mean()
  assert ties > 0.3  # most windows are ties
  w = np.random.default_rng(3).standard_normal(np.asarray(acts["maxpool0"]).shape[1:]).astype(np.float32)
  params = model.params()
  for relu in ("lucent", "standard"):
    g_ours = jax.grad(lambda v: -jnp.sum(model.apply(params, v, ("maxpool0",), relu=relu)["maxpool0"] * w))(
        jnp.asarray(x))
    t = R.to_nchw(x).requires_grad_(True)
    loss = -(ref(t, ("maxpool0",), relu_mode=relu)["maxpool0"] * torch.from_numpy(w.transpose(2, 0, 1))).sum()
    (g_ref,) = torch.autograd.grad(loss, t)
    assert R.rel_err(g_ours, R.to_nhwc(g_ref)) <= TOL, relu


def tf_lrn_numpy(x: np.ndarray, depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5) -> np.ndarray:
  """Closed form of TF's tf.nn.lrn on NHWC: window truncated at the channel edges."""
  x = x.astype(np.float64)
  c = x.shape[-1]
  sq = x * x
  out = np.empty_like(x)
  for i in range(c):
    lo, hi = max(0, i - depth_radius), min(c, i + depth_radius + 1)
    out[..., i] = x[..., i] / (bias + alpha * sq[..., lo:hi].sum(-1)) ** beta
  return out


def test_lrn_tf_matches_closed_form():
  from cv_jax.models.layers import lrn
  from cv_jax.models.spec import SPECS
  rng = np.random.default_rng(5)
  x = (rng.standard_normal((2, 5, 6, 64)) * 120).astype(np.float32)  # alpha term matters
  expect = tf_lrn_numpy(x)
  got = np.asarray(lrn(jnp.asarray(x), **vars(SPECS["inceptionv1"].lrn["tf"])))
  assert R.rel_err(got, expect) <= TOL
  # The same in the full model (localresponsenorm0 of its own maxpool0) ...
  m = models.load("inceptionv1", random_init=0, lrn="tf")
  img = rng.random((1, 64, 64, 3), np.float32)
  a = m(img, layers=("maxpool0", "localresponsenorm0", "conv2d2", "localresponsenorm1"))
  assert R.rel_err(a["localresponsenorm0"], tf_lrn_numpy(np.asarray(a["maxpool0"]))) <= TOL
  assert R.rel_err(a["localresponsenorm1"], tf_lrn_numpy(np.asarray(a["conv2d2"]))) <= TOL
  # ... and the reference's torch form (size 11, alpha 11e-4, k 2) is the same operator.
  ref_tf = R.LucentInceptionV1(m.params(), lrn="tf")
  t = ref_tf._lrn(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  assert R.rel_err(R.to_nhwc(t), expect) <= TOL
  # Lucent's constants are a different operator (the finding the lrn switch exists for).
  lucent = np.asarray(lrn(jnp.asarray(x), **vars(SPECS["inceptionv1"].lrn["lucent"])))
  assert R.rel_err(lucent, expect) > 0.05


def test_non_multiple_of_32_sizes_keep_tf_same(model):
  """Lucent's constant pads equal TF SAME only when the side is a multiple of 32.

  256 = 8 * 32: Lucent's pads agree with SAME everywhere (its head then breaks: 7x7 avgpool on
  8x8 gives 2x2 and the reshape makes 4 rows per image). 240: maxpool10 sees 15x15, where SAME
  pads (1, 1) but Lucent (0, 1), so the shapes differ (8 vs 7). Our model keeps TF SAME and
  equals a reference with dynamic SAME pads.
  """
  lucent = R.LucentInceptionV1(model.params(), padding="lucent")
  same = R.LucentInceptionV1(model.params(), padding="same")
  rng = np.random.default_rng(7)
  layers = ("conv2d0", "maxpool1", "mixed4e", "maxpool10")
  for size in (256, 240):
    x = rng.random((1, size, size, 3), np.float32)
    ours = model(x, layers=layers)
    with torch.no_grad():
      s = same(R.to_nchw(x), layers)
      l = lucent(R.to_nchw(x), layers)
    for n in layers:
      assert R.rel_err(ours[n], R.to_nhwc(s[n])) <= TOL, (size, n)
    if size == 256:
      for n in layers:
        assert R.rel_err(ours[n], R.to_nhwc(l[n])) <= TOL, (size, n)
    else:
      assert R.rel_err(ours["mixed4e"], R.to_nhwc(l["mixed4e"])) <= TOL
      assert ours["maxpool10"].shape[1:3] == (8, 8)
      assert tuple(l["maxpool10"].shape[2:]) == (7, 7)
