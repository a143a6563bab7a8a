"""The DeePSiM fc6 image generator (Dosovitskiy & Brox 2016) that DGN-AM optimises the code of.

The network is described by a small spec, one entry per layer of its Caffe definition
(`nets/upconv/fc6/generator.prototxt` of Evolving-AI-Lab/synthesizing; successors_spec §3.2):
three InnerProduct layers 4096 → 4096, a reshape to 256 × 4 × 4 (C order), nine Deconvolution
(transposed-convolution) layers up to 3 × 256 × 256, each layer but the last followed by a
LeakyReLU with slope 0.3. Every layer has a bias.

Parameters keep Caffe's layouts (= PyTorch's): InnerProduct weights (out, in), Deconvolution
weights (C_in, C_out, k, k), biases (out,). A transposed convolution with stride s and pad p is
computed as a convolution of the input dilated by s, padded by k − 1 − p, with the spatially
flipped kernel and in/out channels swapped.

Output: NHWC, BGR, ImageNet-mean-subtracted, 0–255 scale (roughly −120 … 120), as the Caffe
generator; `to_rgb01` maps it to cv_jax's [0, 1] RGB images.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Mean added back for display / cv_jax's [0, 1] images (RGB order), as the PyTorch ports.
RGB_MEAN = np.asarray([123.0, 117.0, 104.0], np.float32)
LEAK = 0.3


@dataclasses.dataclass(frozen=True)
class Layer:
  """One generator layer: kind "fc" (n_in → n_out), "reshape" (to n_out × 4 × 4 from n_in) or
  "deconv" (n_in → n_out channels, kernel k, stride s, pad p); `act`: LeakyReLU after it."""
  name: str
  kind: str
  n_in: int
  n_out: int
  k: int = 0
  s: int = 1
  p: int = 0
  act: bool = True


FC6 = (
    Layer("defc7", "fc", 4096, 4096),
    Layer("defc6", "fc", 4096, 4096),
    Layer("defc5", "fc", 4096, 4096),
    Layer("reshape", "reshape", 4096, 256, act=False),
    Layer("deconv5", "deconv", 256, 256, 4, 2, 1),
    Layer("conv5_1", "deconv", 256, 512, 3, 1, 1),
    Layer("deconv4", "deconv", 512, 256, 4, 2, 1),
    Layer("conv4_1", "deconv", 256, 256, 3, 1, 1),
    Layer("deconv3", "deconv", 256, 128, 4, 2, 1),
    Layer("conv3_1", "deconv", 128, 128, 3, 1, 1),
    Layer("deconv2", "deconv", 128, 64, 4, 2, 1),
    Layer("deconv1", "deconv", 64, 32, 4, 2, 1),
    Layer("deconv0", "deconv", 32, 3, 4, 2, 1, act=False),
)


def narrow(spec=FC6, divisor: int = 16) -> tuple[Layer, ...]:
  """The same architecture with every width divided by `divisor` (3 output channels kept):
  for fast tests; the reshape stays (n/16) × 4 × 4."""
  out = []
  for ly in spec:
    n_out = ly.n_out if ly.name == spec[-1].name else ly.n_out // divisor
    out.append(dataclasses.replace(ly, n_in=ly.n_in // divisor, n_out=n_out))
  return tuple(out)


def code_size(spec=FC6) -> int:
  """Length of the input code."""
  return spec[0].n_in


def output_size(spec=FC6) -> int:
  """Side of the generated image: 4, then (in − 1)·s − 2p + k per deconvolution."""
  n = 4
  for ly in spec:
    if ly.kind == "deconv":
      n = (n - 1) * ly.s - 2 * ly.p + ly.k
  return n


def param_shapes(spec=FC6) -> dict[str, dict[str, tuple[int, ...]]]:
  """{layer: {"weights": Caffe shape, "bias": (n_out,)}} for every layer with parameters."""
  out = {}
  for ly in spec:
    if ly.kind == "fc":
      out[ly.name] = {"weights": (ly.n_out, ly.n_in), "bias": (ly.n_out,)}
    elif ly.kind == "deconv":
      out[ly.name] = {"weights": (ly.n_in, ly.n_out, ly.k, ly.k), "bias": (ly.n_out,)}
  return out


def _leaky(x):
  return jnp.where(x >= 0, x, LEAK * x)


def deconv(x: jax.Array, w: jax.Array, b: jax.Array, s: int, p: int) -> jax.Array:
  """Caffe/PyTorch transposed convolution of NHWC x with weights (C_in, C_out, k, k)."""
  k = w.shape[-1]
  kern = jnp.transpose(w[:, :, ::-1, ::-1], (2, 3, 0, 1))  # HWIO of the equivalent convolution
  y = jax.lax.conv_general_dilated(x, kern, (1, 1), [(k - 1 - p, k - 1 - p)] * 2,
                                   lhs_dilation=(s, s),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + b


def apply(spec, params: Mapping[str, Mapping[str, jax.Array]], code: jax.Array) -> jax.Array:
  """Generate (N, S, S, 3) BGR mean-subtracted images (0–255 scale) from codes (N, 4096)."""
  x = code
  for ly in spec:
    if ly.kind == "fc":
      x = x @ params[ly.name]["weights"].T + params[ly.name]["bias"]
    elif ly.kind == "reshape":
      x = jnp.transpose(x.reshape(x.shape[0], ly.n_out, 4, 4), (0, 2, 3, 1))
    elif ly.kind == "deconv":
      x = deconv(x, params[ly.name]["weights"], params[ly.name]["bias"], ly.s, ly.p)
    else:
      raise ValueError(f"unknown generator layer kind {ly.kind!r}")
    if ly.act:
      x = _leaky(x)
  return x


def to_rgb01(bgr: jax.Array) -> jax.Array:
  """Generator output → cv_jax images: flip to RGB, add the mean, / 255 (not clipped).

  For BVLC GoogLeNet (input = BGR·255 − mean) this is exactly what DGN-AM feeds the classifier.
  """
  return (bgr[..., ::-1] + jnp.asarray(RGB_MEAN)) / 255.0


def crop_offset(out_size: int, input_size: int) -> int:
  """DGN-AM's centre-crop offset (out − in) // 2: 14 for CaffeNet's 227, 16 for 224."""
  if input_size > out_size:
    raise ValueError(f"classifier input {input_size} is larger than the generator output "
                     f"{out_size}")
  return (out_size - input_size) // 2


class LayerParams(nnx.Module):
  """Weights (Caffe layout) and bias of one generator layer."""

  def __init__(self, weights, bias):
    self.weights = nnx.Param(jnp.asarray(weights, jnp.float32))
    self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))


class Generator(nnx.Module):
  """The generator holding its parameters: `gen(codes)` → (N, 256, 256, 3) BGR images.

  For jit-compiled jobs take `gen.params()` (a plain pytree) and the pure `apply(gen.spec, ...)`.
  """

  def __init__(self, params: Mapping[str, Mapping[str, np.ndarray]], spec=FC6):
    self.spec = tuple(spec)
    shapes = param_shapes(self.spec)
    for name, s in shapes.items():
      if name not in params:
        raise ValueError(f"generator parameters lack layer {name!r}")
      for part in ("weights", "bias"):
        got = tuple(np.shape(params[name][part]))
        if got != s[part]:
          raise ValueError(f"generator {name}/{part} has shape {got}, expected {s[part]}")
    self._names = tuple(shapes)
    for n in self._names:
      setattr(self, n, LayerParams(params[n]["weights"], params[n]["bias"]))

  def params(self) -> dict[str, dict[str, jax.Array]]:
    """The parameters as a plain pytree (jit arguments)."""
    return {n: {"weights": getattr(self, n).weights.value, "bias": getattr(self, n).bias.value}
            for n in self._names}

  def __call__(self, code: jax.Array) -> jax.Array:
    return apply(self.spec, self.params(), jnp.asarray(code, jnp.float32))
