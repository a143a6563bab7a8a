"""Model API: names, aliases, units, truncation, padding conventions, ReLU variants, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax import models
from cv_jax.models import layers as L


@pytest.fixture(scope="module")
def inc():
  return models.load("inceptionv1", random_init=0)


def test_available_and_unknown_model():
  assert models.available() == ("inceptionv1", "googlenet_bvlc")
  with pytest.raises(ValueError, match="available: inceptionv1, googlenet_bvlc"):
    models.load("googlenet")


def test_layer_names_follow_lucid(inc):
  names = inc.layer_names
  assert names[:4] == ("conv2d0_pre_relu", "conv2d0", "maxpool0", "localresponsenorm0")
  for n in ("mixed4a_1x1_pre_relu", "mixed4a_3x3_bottleneck_pre_relu", "mixed4a_3x3_pre_relu",
            "mixed4a_5x5_bottleneck_pre_relu", "mixed4a_5x5_pre_relu",
            "mixed4a_pool_reduce_pre_relu", "mixed4a_pre_relu", "mixed4a", "maxpool4",
            "maxpool10", "softmax2_pre_activation", "softmax2"):
    assert n in names
  assert names[-1] == "softmax2"
  assert len(set(names)) == len(names)


def test_unknown_layer_lists_close_matches(inc):
  with pytest.raises(ValueError, match="mixed4a_pre_relu"):
    inc.resolve("mixed4a_prerelu")


def test_channel_counts(inc):
  assert inc.channels("mixed4a_pre_relu") == 508
  assert inc.channels("mixed4a_3x3_pre_relu") == 204
  assert inc.channels("mixed5b") == 1024
  spec = models.SPECS["googlenet_bvlc"]
  assert spec.blocks["mixed4a"].out == 512 and spec.blocks["mixed4a"].c3 == 208


def test_units_by_branch_and_index(inc):
  u = models.Unit.parse("mixed4a_pre_relu:476", inc)
  assert (u.layer, u.channel) == ("mixed4a_pre_relu", 476)
  assert u.branch(inc) == ("mixed4a", "pool", 32)
  assert models.Unit.parse("mixed4a/pool:32", inc) == u
  assert models.Unit.parse("mixed3a/3x3:0", inc).channel == 64
  assert models.Unit.parse("mixed5b/1x1:5", inc).branch_str(inc) == "mixed5b/1x1:5"
  bvlc = models.load("googlenet_bvlc", random_init=0)
  # mixed4a's 3x3 has 208 channels in BVLC, so the pool branch starts at 448, not 444.
  assert models.Unit.parse("mixed4a/pool:32", bvlc).channel == 480
  assert models.Unit.parse("inception_4a/output:3", bvlc) == models.Unit("mixed4a", 3)
  for bad in ("mixed4a_pre_relu:508", "mixed4a/pool:64", "mixed4a:x", "nonsense:1", "mixed9z/3x3:1"):
    with pytest.raises(ValueError):
      models.Unit.parse(bad, inc)


def test_output_shapes_and_truncation(inc):
  x = jnp.full((2, 224, 224, 3), 0.5)
  out = inc(x, layers=("conv2d0", "mixed3a_pre_relu", "mixed4a", "mixed5b", "softmax2_pre_activation"))
  assert out["conv2d0"].shape == (2, 112, 112, 64)
  assert out["mixed3a_pre_relu"].shape == (2, 28, 28, 256)
  assert out["mixed4a"].shape == (2, 14, 14, 508)
  assert out["mixed5b"].shape == (2, 7, 7, 1024)
  assert out["softmax2_pre_activation"].shape == (2, 1008)
  # Truncation: the program for mixed3a has no parameters of later blocks.
  jaxpr = jax.make_jaxpr(lambda p, x: inc.apply(p, x, ["mixed3a"]))(inc.params(), x)
  # stem + one block: 1x1 convolutions are matrix products (layers._pointwise), the rest convs
  assert _count_primitive(jaxpr.jaxpr, "conv_general_dilated") == 2 + 2
  assert _count_primitive(jaxpr.jaxpr, "dot_general") == 1 + 4


def _count_primitive(jaxpr, name: str) -> int:
  """Occurrences of a primitive in a jaxpr, inside nested calls (custom VJPs, jit) too."""
  n = 0
  for e in jaxpr.eqns:
    n += e.primitive.name == name
    for v in e.params.values():
      inner = getattr(v, "jaxpr", v)
      if hasattr(inner, "eqns"):
        n += _count_primitive(inner, name)
  return n


def test_tf_same_at_odd_sizes(inc):
  # TF "SAME": every stride-2 op gives ceil(H / 2), at any size.
  out = inc(jnp.zeros((1, 225, 225, 3)), layers=("conv2d0", "maxpool0", "mixed3a", "mixed4a"))
  assert out["conv2d0"].shape[1] == 113 and out["maxpool0"].shape[1] == 57
  assert out["mixed3a"].shape[1] == 29 and out["mixed4a"].shape[1] == 15


def test_caffe_pool_padding_matches_ceil_mode():
  # Caffe: out = ceil((H + 2p - k) / s) + 1, clipped when the last window starts in the padding.
  for size in range(5, 40):
    for k, s, p in ((3, 2, 0), (3, 1, 1), (5, 3, 0)):
      lo, hi = L.caffe_pool_padding(size, k, s, p)
      out = (size + lo + hi - k) // s + 1
      expected = int(np.ceil((size + 2 * p - k) / s)) + 1
      if p and (expected - 1) * s >= size + p:
        expected -= 1
      assert out == expected, (size, k, s, p)


def test_lrn_closed_form():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 4, 13)).astype(np.float32) * 5
  y = np.asarray(L.lrn(jnp.asarray(x), size=11, alpha=1e-4, beta=0.5, bias=2.0))
  ref = np.empty_like(x)
  for c in range(13):
    s = (x[..., max(0, c - 5):c + 6] ** 2).sum(-1)
    ref[..., c] = x[..., c] / (2.0 + 1e-4 * s) ** 0.5
  np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_relu_variants_gradients():
  x = jnp.asarray([[-2.0, -0.5, 0.0, 1.0]])
  g = jnp.asarray([[1.0, -1.0, 1.0, 1.0]])
  vjp = lambda mode, step=None: jax.vjp(lambda v: L.relu(v, mode, step), x)[1](g)[0]
  np.testing.assert_array_equal(vjp("standard"), [[0, 0, 0, 1]])
  np.testing.assert_allclose(vjp("lucent"), [[0.1, -0.1, 1, 1]])
  # Lucid: this element's relu gradient is nonzero (x=0 and x=1 pass), so no redirection.
  np.testing.assert_array_equal(vjp("lucid", 0), [[0, 0, 1, 1]])
  # All inputs negative: the ordinary gradient is blocked, so pass g where it pushes up (g < 0).
  xn = jnp.asarray([[-2.0, -0.5], [-1.0, 3.0]])
  gn = jnp.asarray([[1.0, -1.0], [-1.0, 2.0]])
  f = lambda step: jax.vjp(lambda v: L.relu(v, "lucid", step), xn)[1](gn)[0]
  np.testing.assert_array_equal(f(16), [[0, -1], [0, 2]])
  np.testing.assert_array_equal(f(17), [[0, 0], [0, 2]])
  with pytest.raises(ValueError, match="relu"):
    L.relu(x, "leaky")


def test_bad_images_rejected(inc):
  with pytest.raises(ValueError, match="NHWC"):
    inc(jnp.zeros((1, 3, 224, 224)))
  with pytest.raises(ValueError, match="no layers requested"):
    inc(jnp.zeros((1, 64, 64, 3)), layers=())


def test_lrn_option(inc):
  lucent = models.load("inceptionv1", random_init=0, lrn="lucent")
  x = jnp.full((1, 64, 64, 3), 0.3)
  a = inc(x, "localresponsenorm0")["localresponsenorm0"]
  b = lucent(x, "localresponsenorm0")["localresponsenorm0"]
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match="LRN"):
    models.load("googlenet_bvlc", random_init=0, lrn="tf")


def test_aux_heads():
  m = models.load("inceptionv1", random_init=1, aux_heads=True)
  out = m(jnp.full((1, 224, 224, 3), 0.5), ("softmax0", "softmax1", "nn0", "head1_pool"))
  assert out["softmax0"].shape == (1, 1008) and out["nn0"].shape == (1, 1024)
  assert out["head1_pool"].shape == (1, 4, 4, 528)
  np.testing.assert_allclose(out["softmax0"].sum(), 1.0, rtol=1e-5)
