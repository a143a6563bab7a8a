"""BVLC GoogLeNet (real weights) against an independent PyTorch re-implementation of deploy.prototxt.

The reference reads the Caffe blob arrays itself (not via cv_jax's converters), so the weight
mapping, Caffe's ceil-mode pooling, symmetric pads, LRN and BGR/mean preprocessing are all
checked at once: every named layer, the Caffe blob aliases, input gradients, and predictions.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from cv_jax.data import load_image  # noqa: E402
from cv_jax.testing import torch_reference as R  # noqa: E402
from cv_jax.testing.assertions import assert_trees_rel_close  # noqa: E402

TOL = 1e-5
BLOCKS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


@pytest.fixture(scope="module", autouse=True)
def _precision(highest_precision):
  """Every test here compares float32 results with PyTorch at full matmul precision."""


@pytest.fixture(scope="module")
def ref(bvlc_npz):
  return R.CaffeGoogLeNet(bvlc_npz)


@pytest.fixture(scope="module")
def images(sample_images):
  # Two unrelated classes (tench, and a later one).
  return np.stack([load_image(sample_images[0]), load_image(sample_images[417])])


def caffe_tops() -> dict[str, str]:
  """Caffe blob (top) names of deploy.prototxt -> the reference's Lucid names, written out here.

  Caffe's ReLUs are in place, so a convolution's top is its post-ReLU output.
  """
  tops = {"conv1/7x7_s2": "conv2d0", "pool1/3x3_s2": "maxpool0", "pool1/norm1": "localresponsenorm0",
          "conv2/3x3_reduce": "conv2d1", "conv2/3x3": "conv2d2", "conv2/norm2": "localresponsenorm1",
          "pool2/3x3_s2": "maxpool1", "pool3/3x3_s2": "maxpool4", "pool4/3x3_s2": "maxpool10",
          "pool5/7x7_s1": "avgpool0", "loss3/classifier": "softmax2_pre_activation", "prob": "softmax2"}
  for b in BLOCKS:
    for caffe, ours in (("1x1", "1x1"), ("3x3_reduce", "3x3_bottleneck"), ("3x3", "3x3"),
                        ("5x5_reduce", "5x5_bottleneck"), ("5x5", "5x5"), ("pool", "pool"),
                        ("pool_proj", "pool_reduce")):
      tops[f"inception_{b}/{caffe}"] = f"mixed{b}_{ours}"
    tops[f"inception_{b}/output"] = f"mixed{b}"
  return tops


def test_every_layer_and_caffe_alias(bvlc_model, ref, images):
  with torch.no_grad():
    theirs = ref(R.to_nchw(images))
  names = bvlc_model.layer_names
  assert set(names) == set(theirs) and len(names) == 150
  ours = bvlc_model(images)
  assert_trees_rel_close(ours, {n: R.to_nhwc(theirs[n]) for n in names}, TOL)
  tops = caffe_tops()
  by_alias = bvlc_model(images, layers=tuple(tops))
  assert_trees_rel_close(by_alias, {c: R.to_nhwc(theirs[n]) for c, n in tops.items()}, TOL)
  # Real weights: confident, correct predictions on these two photos.
  assert list(np.argmax(ours["softmax2"], -1)) == [0, 417]


def test_input_gradients(bvlc_model, bvlc_npz, images):
  """In float64 on both sides: in float32 a near-tied max-pool window can send the gradient to
  different cells in the two libraries (see tests/test_inceptionv1_reference.py)."""
  layers = {"conv2d2": 17, "mixed4a_pre_relu": 476, "softmax2_pre_activation": 417}
  ref64 = R.CaffeGoogLeNet(bvlc_npz, dtype=torch.float64)
  x = R.to_nchw(images, torch.float64).requires_grad_(True)
  t_out = ref64(x, tuple(layers))
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), bvlc_model.params())
    out, vjp = jax.vjp(lambda v: bvlc_model.apply(params, v, tuple(layers)),
                       jnp.asarray(images, jnp.float64))
    ours, theirs = {}, {}
    for l, c in layers.items():
      a = out[l]
      ct = {k: jnp.zeros_like(v) for k, v in out.items()}
      ct[l] = jnp.zeros_like(a).at[..., c].set(-1.0 / (a.size / a.shape[-1]))
      ours[l] = np.asarray(vjp(ct)[0])
      (g_ref,) = torch.autograd.grad(-t_out[l][:, c].mean(), x, retain_graph=True)
      theirs[l] = R.to_nhwc(g_ref)
      assert np.abs(theirs[l]).max() > 0, l
  assert_trees_rel_close(ours, theirs, TOL)


def test_predictions_on_first_100_samples(bvlc_model, ref, sample_images):
  paths = sample_images[:100]
  fwd = jax.jit(lambda p, v: bvlc_model.apply(p, v, ("softmax2_pre_activation",))["softmax2_pre_activation"])
  params = bvlc_model.params()
  ours, theirs = [], []
  for i in range(0, len(paths), 50):
    x = np.stack([load_image(p) for p in paths[i:i + 50]])
    ours.append(np.asarray(fwd(params, jnp.asarray(x))))
    with torch.no_grad():
      theirs.append(ref(R.to_nchw(x), ("softmax2_pre_activation",))["softmax2_pre_activation"].numpy())
  ours, theirs = np.concatenate(ours), np.concatenate(theirs)
  assert R.rel_err(ours, theirs) <= TOL
  labels = np.arange(len(paths))
  top5_ours = np.argsort(-ours, 1)[:, :5]
  top5_ref = np.argsort(-theirs, 1)[:, :5]
  np.testing.assert_array_equal(top5_ours[:, 0], top5_ref[:, 0])
  assert all(set(a) == set(b) for a, b in zip(top5_ours, top5_ref))
  top1 = (top5_ours[:, 0] == labels).mean()
  top5 = (top5_ours == labels[:, None]).any(1).mean()
  # Model zoo: 68.7 / 88.9 % on ImageNet val; on all 1000 samples 74.1 / 92.9 %.
  assert 0.6 <= top1 <= 0.95 and 0.8 <= top5 <= 1.0, (top1, top5)
