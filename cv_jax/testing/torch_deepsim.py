"""Independent PyTorch reference of the DeePSiM fc6 generator, used only by tests.

Written from the Caffe definition (`nets/upconv/fc6/generator.prototxt`, successors_spec §3.2),
not from `cv_jax.models.deepsim`: `nn.Linear` and `nn.ConvTranspose2d` layers (whose weight
layouts equal Caffe's InnerProduct (out, in) and Deconvolution (C_in, C_out, k, k)), an in-place
`LeakyReLU(0.3)` after every layer but the last, and a C-order view to (N, 256, 4, 4) after
`defc5`. Output NCHW, BGR, mean-subtracted.

Requires torch (imported at module import).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch
from torch import nn

# name, Caffe type, C_in, C_out, kernel, stride, pad (the prototxt, in order)
PROTOTXT = (
    ("defc7", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("defc6", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("defc5", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("deconv5", "Deconvolution", 256, 256, 4, 2, 1),
    ("conv5_1", "Deconvolution", 256, 512, 3, 1, 1),
    ("deconv4", "Deconvolution", 512, 256, 4, 2, 1),
    ("conv4_1", "Deconvolution", 256, 256, 3, 1, 1),
    ("deconv3", "Deconvolution", 256, 128, 4, 2, 1),
    ("conv3_1", "Deconvolution", 128, 128, 3, 1, 1),
    ("deconv2", "Deconvolution", 128, 64, 4, 2, 1),
    ("deconv1", "Deconvolution", 64, 32, 4, 2, 1),
    ("deconv0", "Deconvolution", 32, 3, 4, 2, 1),
)


class _Reshape(nn.Module):
  def __init__(self, c: int):
    super().__init__()
    self.c = c

  def forward(self, x):
    return x.view(x.shape[0], self.c, 4, 4)


def build(divisor: int = 1) -> nn.Sequential:
  """The generator as an nn.Sequential (widths / divisor, 3 output channels kept)."""
  layers = OrderedDict()
  for i, (name, kind, cin, cout, k, s, p) in enumerate(PROTOTXT):
    cin //= divisor
    if i < len(PROTOTXT) - 1:
      cout //= divisor
    if kind == "InnerProduct":
      layers[name] = nn.Linear(cin, cout)
    else:
      layers[name] = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p)
    if i < len(PROTOTXT) - 1:
      layers["relu_" + name] = nn.LeakyReLU(0.3, inplace=True)
    if name == "defc5":
      layers["reshape"] = _Reshape(256 // divisor)
  return nn.Sequential(layers).double()


def load(net: nn.Sequential, params: Mapping[str, Mapping[str, np.ndarray]]) -> nn.Sequential:
  """Copy Caffe-layout parameters {layer: {"weights", "bias"}} into the module."""
  sd = {}
  for name, *_ in PROTOTXT:
    sd[f"{name}.weight"] = torch.from_numpy(np.asarray(params[name]["weights"], np.float64))
    sd[f"{name}.bias"] = torch.from_numpy(np.asarray(params[name]["bias"], np.float64))
  net.load_state_dict(sd)
  return net


def forward_and_grad(params: Mapping, code: np.ndarray, cotangent: np.ndarray,
                     divisor: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Output (N, H, W, 3) NHWC and the code gradient of Σ output · cotangent (NHWC), float64."""
  net = load(build(divisor), params).eval()
  z = torch.tensor(np.asarray(code, np.float64), requires_grad=True)
  out = net(z)
  ct = torch.from_numpy(np.asarray(cotangent, np.float64)).permute(0, 3, 1, 2)
  (out * ct).sum().backward()
  return out.detach().permute(0, 2, 3, 1).numpy(), z.grad.numpy()
