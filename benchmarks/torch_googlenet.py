"""A small PyTorch BVLC GoogLeNet (from deploy.prototxt), truncated at an inception block's pre-ReLU
concat, loading the Caffe blobs .npz. Benchmark-only: the peer for `benchmarks/occlusion.py`.

Input: NCHW RGB float in [0, 1]; the model applies Caffe's preprocessing (BGR * 255 - mean).
Output: the spatial mean of every channel of `<block>_pre_relu` (the paper's activation), (N, C).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BLOCKS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
POOL_BEFORE = {"4a": "pool3", "5a": "pool4"}


class GoogLeNetTrunk(torch.nn.Module):
  """conv1 ... inception_<block>, returning the pre-ReLU concat's spatial means."""

  def __init__(self, blobs_npz: str, block: str = "4a"):
    super().__init__()
    if block not in BLOCKS:
      raise ValueError(f"block must be one of {BLOCKS}")
    self.blocks = BLOCKS[: BLOCKS.index(block) + 1]
    z = np.load(blobs_npz)
    self.w = {}
    for key in z.files:
      name, kind = key.rsplit("/", 1)
      self.w.setdefault(name, {})[kind] = torch.from_numpy(np.asarray(z[key], np.float32))
    self.register_buffer("mean", torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1))

  def channels_last(self) -> "GoogLeNetTrunk":
    """Keep the convolution weights in PyTorch's channels-last memory format (in place)."""
    for p in self.w.values():
      if p["weights"].dim() == 4:
        p["weights"] = p["weights"].contiguous(memory_format=torch.channels_last)
    return self

  def conv(self, name, x, pad=0, stride=1):
    p = self.w[name]
    return F.conv2d(x, p["weights"], p["bias"], stride=stride, padding=pad)

  @staticmethod
  def lrn(x):
    return F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0)

  def forward(self, x):
    x = x[:, [2, 1, 0]] * 255.0 - self.mean
    x = F.relu(self.conv("conv1/7x7_s2", x, 3, 2))
    x = self.lrn(F.max_pool2d(x, 3, 2, ceil_mode=True))
    x = F.relu(self.conv("conv2/3x3_reduce", x))
    x = F.relu(self.conv("conv2/3x3", x, 1))
    x = F.max_pool2d(self.lrn(x), 3, 2, ceil_mode=True)
    for b in self.blocks:
      if b in POOL_BEFORE:
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
      n = f"inception_{b}"
      p1 = self.conv(f"{n}/1x1", x)
      p3 = self.conv(f"{n}/3x3", F.relu(self.conv(f"{n}/3x3_reduce", x)), 1)
      p5 = self.conv(f"{n}/5x5", F.relu(self.conv(f"{n}/5x5_reduce", x)), 2)
      pp = self.conv(f"{n}/pool_proj", F.max_pool2d(x, 3, 1, 1))
      pre = torch.cat([p1, p3, p5, pp], 1)
      x = F.relu(pre)
    return pre.mean(dim=(2, 3))
