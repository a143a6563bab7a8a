"""Independent PyTorch (NCHW) references for the two networks, used only by tests and benchmarks.

Nothing here imports cv_jax's network code: the layer order, paddings, pools and LRN constants
are re-written from the specs (Lucent's InceptionV1 as Lucent's code builds it, and
the BVLC Caffe `deploy.prototxt`), so agreement with `cv_jax.models` is evidence, not tautology.

* `LucentInceptionV1(params)`: Lucent's port of inception5h (fixed asymmetric pads, torch LRN
  size 9, 7x7 average pool, 1008 classes), weights taken from a cv_jax parameter pytree
  (HWIO -> OIHW). `padding="same"` swaps Lucent's constant pads for dynamic TF "SAME" pads and
  `lrn="tf"` for the TF graph's LRN (radius 5, bias 2, alpha 1e-4, beta 0.5).
* `CaffeGoogLeNet(blobs)`: BVLC GoogLeNet from the Caffe blob arrays directly (OIHW).

`dtype=torch.float64` builds a float64 reference from the same (float32) weights: input
gradients are compared in float64, where rounding cannot decide a near-tied max-pool window
(see tests/test_inceptionv1_reference.py). Both take NCHW RGB images in [0, 1] and return `{lucid layer name: NCHW tensor}` (2-D for the
logits and probabilities), including `<block>_pre_relu` (the concat of the four branch
pre-activations). The ReLU backward is selectable: "standard", "lucent" (Lucent's
RedirectedReLU) or "lucid" (Lucid's redirected_relu_grad with its step schedule).

Requires torch (imported at module import).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cv_jax.testing.assertions import rel_err  # noqa: F401 (tests use R.rel_err)

BLOCKS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
          "mixed5a", "mixed5b")
POOL_BEFORE = {"mixed4a": "maxpool4", "mixed5a": "maxpool10"}
BRANCH_CONVS = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
LUCID_STEPS = 16


# --- ReLU variants (forward = ReLU; the backward differs) -----------------------------------------

class LucentRedirectedReLU(torch.autograd.Function):
  """Lucent's RedirectedReLU: gradient g where x >= 0, 0.1 g where x < 0."""

  @staticmethod
  def forward(ctx, x):
    ctx.save_for_backward(x)
    return x.clamp(min=0)

  @staticmethod
  def backward(ctx, g):
    (x,) = ctx.saved_tensors
    out = g.clone()
    neg = x < 0
    out[neg] = out[neg] * 0.1
    return out


class LucidRedirectedReLU(torch.autograd.Function):
  """Lucid's `redirected_relu_grad` (g is the cotangent of the loss being minimised).

  relu_grad = where(x < 0, 0, g); redirected = where(x < 0 and g > 0, 0, g). Per batch element:
  relu_grad if its L2 norm is > 0, else redirected. When step > 16 always relu_grad.
  """

  @staticmethod
  def forward(ctx, x, step):
    ctx.save_for_backward(x)
    ctx.step = step
    return x.clamp(min=0)

  @staticmethod
  def backward(ctx, g):
    (x,) = ctx.saved_tensors
    zero = torch.zeros_like(g)
    relu_grad = torch.where(x < 0, zero, g)
    if ctx.step is not None and ctx.step > LUCID_STEPS:
      return relu_grad, None
    redirected = torch.where((x < 0) & (g > 0), zero, g)
    mag = torch.linalg.vector_norm(relu_grad.reshape(relu_grad.shape[0], -1), dim=1)
    keep = (mag > 0).reshape((-1,) + (1,) * (g.ndim - 1))
    return torch.where(keep, relu_grad, redirected), None


def relu(x: torch.Tensor, mode: str, step: int | None) -> torch.Tensor:
  """ReLU with the backward pass of `mode` ("standard", "lucent", "lucid")."""
  if mode == "standard":
    return F.relu(x)
  if mode == "lucent":
    return LucentRedirectedReLU.apply(x)
  if mode == "lucid":
    return LucidRedirectedReLU.apply(x, step)
  raise ValueError(f"unknown relu mode {mode!r}")


class _Done(Exception):
  pass


# --- shared bookkeeping --------------------------------------------------------------------------

class _Reference(nn.Module):
  """Holds conv/fc weights as buffers keyed by Lucid layer name and records intermediates."""

  def __init__(self, dtype: torch.dtype = torch.float32):
    super().__init__()
    self.dtype = dtype
    self._w: dict[str, torch.Tensor] = {}
    self._b: dict[str, torch.Tensor] = {}

  def _set(self, name: str, w: np.ndarray, b: np.ndarray) -> None:
    # Weights arrive as float32; float64 holds them exactly (a float64 reference, same weights).
    np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
    self._w[name] = torch.from_numpy(np.array(np.asarray(w, np.float32), np_dtype, order="C",
                                              copy=True))
    self._b[name] = torch.from_numpy(np.array(np.asarray(b, np.float32), np_dtype,
                                              copy=True).reshape(-1))

  def _conv(self, rec, name, x, stride=1, pad=(0, 0, 0, 0), relu_mode="standard", step=None):
    if len(set(pad)) == 1:  # symmetric: let the convolution pad (no extra copy)
      y = F.conv2d(x, self._w[name], self._b[name], stride=stride, padding=pad[0])
    else:
      y = F.conv2d(F.pad(x, pad, value=0.0), self._w[name], self._b[name], stride=stride)
    rec[f"{name}_pre_relu"] = y
    r = relu(y, relu_mode, step)
    rec[name] = r
    return y, r

  def forward_to(self, rec: dict, x: torch.Tensor, relu_mode: str, step) -> None:
    raise NotImplementedError

  def _check(self, rec) -> None:
    """Stop the forward pass once every requested layer is recorded."""
    if self._wanted is not None and self._wanted <= set(rec):
      raise _Done

  def forward(self, images: torch.Tensor, layers: Sequence[str] | None = None, *,
              relu_mode: str = "standard", step: int | None = None) -> dict[str, torch.Tensor]:
    """Run on NCHW RGB images in [0, 1]; return the named intermediates (all, or `layers`)."""
    if images.ndim != 4 or images.shape[1] != 3:
      raise ValueError(f"images must be NCHW with 3 channels, got {tuple(images.shape)}")
    rec: dict[str, torch.Tensor] = {}
    self._wanted = None if layers is None else set(layers)
    try:
      self.forward_to(rec, images, relu_mode, step)
    except _Done:
      pass
    missing = set(layers or ()) - set(rec)
    if missing:
      raise ValueError(f"unknown layers {sorted(missing)}")
    if layers is None:
      return rec
    return {l: rec[l] for l in layers}


def _block(ref: _Reference, rec, name, x, pool_pad_value_inf: bool, relu_mode, step):
  """One inception block: branches 1x1, 3x3, 5x5, pool (3x3/1 max, -inf pad 1) -> concat."""
  p1, r1 = ref._conv(rec, f"{name}_1x1", x, relu_mode=relu_mode, step=step)
  _, rb3 = ref._conv(rec, f"{name}_3x3_bottleneck", x, relu_mode=relu_mode, step=step)
  p3, r3 = ref._conv(rec, f"{name}_3x3", rb3, pad=(1, 1, 1, 1), relu_mode=relu_mode, step=step)
  _, rb5 = ref._conv(rec, f"{name}_5x5_bottleneck", x, relu_mode=relu_mode, step=step)
  p5, r5 = ref._conv(rec, f"{name}_5x5", rb5, pad=(2, 2, 2, 2), relu_mode=relu_mode, step=step)
  if pool_pad_value_inf:
    pooled = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 1)
  else:
    pooled = nn.functional.max_pool2d(x, 3, 1, padding=1, ceil_mode=True)
  rec[f"{name}_pool"] = pooled
  pp, rp = ref._conv(rec, f"{name}_pool_reduce", pooled, relu_mode=relu_mode, step=step)
  rec[f"{name}_pre_relu"] = torch.cat([p1, p3, p5, pp], 1)
  out = torch.cat([r1, r3, r5, rp], 1)
  rec[name] = out
  return out


# --- Lucent's InceptionV1 ------------------------------------------------------------------------

def _tf_same(size: int, k: int, s: int) -> tuple[int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


class LucentInceptionV1(_Reference):
  """Lucent's InceptionV1 (inception5h port), NCHW, from a cv_jax parameter pytree.

  `params`: {layer: {"kernel": HWIO or (in, out), "bias": (out,)}} (e.g. `model.params()`).
  `lrn`: "lucent" = torch `local_response_norm(9, 1e-4, 0.5, 1)` as Lucent ships it, or "tf" =
  torch `local_response_norm(11, 11e-4, 0.5, 2)`, the TF graph's constants.
  `padding`: "lucent" = Lucent's constant pads (conv2d0 (2,3,2,3) zeros, stride-2 max pools
  (0,1,0,1) of -inf), exact TF SAME only when the side is a multiple of 32; "same" = TF SAME
  pads computed from each input size.
  Images are mapped to the model range x*255 - 117 inside `forward` (Lucent does it in
  render_vis).
  """

  def __init__(self, params: Mapping, lrn: str = "lucent", padding: str = "lucent",
               dtype: torch.dtype = torch.float32):
    super().__init__(dtype)
    if lrn not in ("lucent", "tf"):
      raise ValueError(f"lrn must be 'lucent' or 'tf', got {lrn!r}")
    if padding not in ("lucent", "same"):
      raise ValueError(f"padding must be 'lucent' or 'same', got {padding!r}")
    self.lrn = lrn
    self.padding = padding
    for name, p in params.items():
      k = np.asarray(p["kernel"], np.float32)
      w = k.transpose(3, 2, 0, 1) if k.ndim == 4 else k.T   # HWIO -> OIHW; (in,out) -> (out,in)
      self._set(name, w, np.asarray(p["bias"]))

  def _lrn(self, x):
    if self.lrn == "lucent":
      return F.local_response_norm(x, size=9, alpha=1e-4, beta=0.5, k=1.0)
    return F.local_response_norm(x, size=11, alpha=11e-4, beta=0.5, k=2.0)

  def _pads(self, x, k, s, value_pad):
    if self.padding == "lucent":
      return value_pad
    ph = _tf_same(x.shape[2], k, s)
    pw = _tf_same(x.shape[3], k, s)
    return (pw[0], pw[1], ph[0], ph[1])

  def _maxpool2(self, rec, name, x):
    pad = self._pads(x, 3, 2, (0, 1, 0, 1))
    y = F.max_pool2d(F.pad(x, pad, value=float("-inf")), 3, 2, padding=0, ceil_mode=False)
    rec[name] = y
    return y

  def forward_to(self, rec, images, relu_mode, step):
    x = images * 255.0 - 117.0
    _, x = self._conv(rec, "conv2d0", x, 2, self._pads(x, 7, 2, (2, 3, 2, 3)), relu_mode, step)
    x = self._maxpool2(rec, "maxpool0", x)
    x = rec["localresponsenorm0"] = self._lrn(x)
    self._check(rec)
    _, x = self._conv(rec, "conv2d1", x, relu_mode=relu_mode, step=step)
    _, x = self._conv(rec, "conv2d2", x, pad=(1, 1, 1, 1), relu_mode=relu_mode, step=step)
    x = rec["localresponsenorm1"] = self._lrn(x)
    x = self._maxpool2(rec, "maxpool1", x)
    for block in BLOCKS:
      if block in POOL_BEFORE:
        x = self._maxpool2(rec, POOL_BEFORE[block], x)
      x = _block(self, rec, block, x, True, relu_mode, step)
      self._check(rec)
    x = rec["avgpool0"] = F.avg_pool2d(x, 7, stride=1, padding=0, count_include_pad=False)
    logits = F.linear(x.reshape(-1, 1024), self._w["softmax2"], self._b["softmax2"])
    rec["softmax2_pre_activation"] = logits
    rec["softmax2"] = F.softmax(logits, dim=1)


# --- BVLC Caffe GoogLeNet ------------------------------------------------------------------------

_CAFFE_STEM = {"conv2d0": "conv1/7x7_s2", "conv2d1": "conv2/3x3_reduce", "conv2d2": "conv2/3x3",
               "softmax2": "loss3/classifier"}
_CAFFE_BRANCH = {"1x1": "1x1", "3x3_bottleneck": "3x3_reduce", "3x3": "3x3",
                 "5x5_bottleneck": "5x5_reduce", "5x5": "5x5", "pool_reduce": "pool_proj"}
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)


def caffe_name(ours: str) -> str:
  """Caffe layer name of a Lucid parameter name (e.g. mixed4a_3x3_bottleneck -> inception_4a/3x3_reduce)."""
  if ours in _CAFFE_STEM:
    return _CAFFE_STEM[ours]
  block, branch = ours.split("_", 1)
  return f"inception_{block[len('mixed'):]}/{_CAFFE_BRANCH[branch]}"


class CaffeGoogLeNet(_Reference):
  """BVLC GoogLeNet as in `deploy.prototxt`, weights straight from the Caffe blob arrays.

  `blobs`: a path to `bvlc_googlenet_blobs.npz` or a mapping `"<caffe layer>/weights"` (OIHW or
  (out, in)) / `"<caffe layer>/bias"`. Symmetric conv pads (conv1 3, conv2/3x3 1, 3x3 1, 5x5 2),
  ceil-mode max pools (pad 0 stride 2; pad 1 stride 1 in the blocks), LRN
  `nn.LocalResponseNorm(5, 1e-4, 0.75, 1)`, 7x7 average pool, fc 1000. Input: RGB [0, 1] ->
  BGR * 255 - (104, 117, 123).
  """

  def __init__(self, blobs: Mapping[str, np.ndarray] | str | os.PathLike,
               dtype: torch.dtype = torch.float32):
    super().__init__(dtype)
    if not isinstance(blobs, Mapping):
      with np.load(blobs) as z:
        blobs = {k: z[k] for k in z.files}
    names = ["conv2d0", "conv2d1", "conv2d2", "softmax2"]
    names += [f"{b}_{c}" for b in BLOCKS for c in BRANCH_CONVS]
    for ours in names:
      theirs = caffe_name(ours)
      self._set(ours, blobs[f"{theirs}/weights"], blobs[f"{theirs}/bias"])
    self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

  def _pool2(self, rec, name, x):
    y = F.max_pool2d(x, 3, 2, padding=0, ceil_mode=True)
    rec[name] = y
    return y

  def forward_to(self, rec, images, relu_mode, step):
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=images.dtype).reshape(1, 3, 1, 1)
    x = images.flip(1) * 255.0 - mean
    _, x = self._conv(rec, "conv2d0", x, 2, (3, 3, 3, 3), relu_mode, step)
    x = self._pool2(rec, "maxpool0", x)
    x = rec["localresponsenorm0"] = self.norm(x)
    self._check(rec)
    _, x = self._conv(rec, "conv2d1", x, relu_mode=relu_mode, step=step)
    _, x = self._conv(rec, "conv2d2", x, pad=(1, 1, 1, 1), relu_mode=relu_mode, step=step)
    x = rec["localresponsenorm1"] = self.norm(x)
    x = self._pool2(rec, "maxpool1", x)
    for block in BLOCKS:
      if block in POOL_BEFORE:
        x = self._pool2(rec, POOL_BEFORE[block], x)
      x = _block(self, rec, block, x, False, relu_mode, step)
      self._check(rec)
    x = rec["avgpool0"] = F.avg_pool2d(x, 7, stride=1, ceil_mode=True)
    logits = F.linear(x.flatten(1), self._w["softmax2"], self._b["softmax2"])
    rec["softmax2_pre_activation"] = logits
    rec["softmax2"] = F.softmax(logits, dim=1)


# --- helpers ------------------------------------------------------------------------------------

def to_nchw(images, dtype: torch.dtype = torch.float32) -> torch.Tensor:
  """NHWC numpy/jax array -> contiguous NCHW torch tensor (float32, or float64 if asked)."""
  np_dtype = np.float64 if dtype == torch.float64 else np.float32
  return torch.from_numpy(np.ascontiguousarray(np.asarray(images, np_dtype).transpose(0, 3, 1, 2)))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
  """NCHW (or 2-D) torch tensor -> NHWC numpy array."""
  a = t.detach().cpu().numpy()
  return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a
