"""Small declarative descriptions of the two GoogLeNet variants.

Both networks share the GoogLeNet topology (stem, nine inception blocks, global pool, classifier,
two optional auxiliary heads); what differs is captured here: channel counts, padding and pooling
conventions, LRN constants, input preprocessing and the class count. Layer and parameter names
follow Lucid's InceptionV1 graph for both networks.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

BRANCHES = ("1x1", "3x3", "5x5", "pool")
BLOCKS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
          "mixed5a", "mixed5b")
# Max-pool that precedes a block (Lucid names).
POOL_BEFORE = {"mixed3a": None, "mixed4a": "maxpool4", "mixed5a": "maxpool10"}


@dataclasses.dataclass(frozen=True)
class LRNSpec:
  """LRN constants in the TF convention: y = x / (bias + alpha * window_sum(x^2)) ** beta."""
  size: int
  alpha: float
  beta: float
  bias: float


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """Output channels of an inception block: 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool."""
  c1: int
  c3r: int
  c3: int
  c5r: int
  c5: int
  cp: int

  @property
  def branch_sizes(self) -> tuple[int, int, int, int]:
    return (self.c1, self.c3, self.c5, self.cp)

  @property
  def out(self) -> int:
    return sum(self.branch_sizes)

  def offsets(self) -> dict[str, int]:
    """Start index of each branch inside the block's channel concat."""
    starts, acc = {}, 0
    for name, size in zip(BRANCHES, self.branch_sizes):
      starts[name] = acc
      acc += size
    return starts


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """Everything that distinguishes one GoogLeNet variant from another."""
  name: str
  n_classes: int
  blocks: Mapping[str, BlockSpec]
  padding: str            # "same" (TF, any size) or "caffe" (symmetric conv pads, ceil pooling)
  lrn: Mapping[str, LRNSpec]
  default_lrn: str
  input_mode: str         # "rgb_minus_117" or "bgr_minus_mean"
  aux_classes: int
  labels: str | None = None  # how the class labels are known; see cv_jax.models.labels
  description: str = ""

  @property
  def aux_after(self) -> Mapping[str, tuple[str, str, str]]:
    """Auxiliary heads: block they read from -> (head prefix, hidden FC, classifier)."""
    return AUX_AFTER

  def conv_layers(self, aux_heads: bool) -> dict[str, tuple[int, int, int]]:
    """Parameter name -> (kernel size, in channels, out channels), in forward order.

    Fully connected layers are listed with kernel size 0.
    """
    convs = {"conv2d0": (7, 3, 64), "conv2d1": (1, 64, 64), "conv2d2": (3, 64, 192)}
    cin = 192
    for name, b in self.blocks.items():
      convs[f"{name}_1x1"] = (1, cin, b.c1)
      convs[f"{name}_3x3_bottleneck"] = (1, cin, b.c3r)
      convs[f"{name}_3x3"] = (3, b.c3r, b.c3)
      convs[f"{name}_5x5_bottleneck"] = (1, cin, b.c5r)
      convs[f"{name}_5x5"] = (5, b.c5r, b.c5)
      convs[f"{name}_pool_reduce"] = (1, cin, b.cp)
      cin = b.out
      if aux_heads and name in AUX_AFTER:
        head, nn, soft = AUX_AFTER[name]
        convs[f"{head}_bottleneck"] = (1, b.out, 128)
        convs[nn] = (0, 128 * 4 * 4, 1024)
        convs[soft] = (0, 1024, self.aux_classes)
    convs["softmax2"] = (0, cin, self.n_classes)
    return convs


# Auxiliary heads: block they read from -> (head prefix, hidden FC, classifier).
AUX_AFTER = {"mixed4a": ("head0", "nn0", "softmax0"), "mixed4d": ("head1", "nn1", "softmax1")}

_INCEPTION5H_BLOCKS = {
    "mixed3a": BlockSpec(64, 96, 128, 16, 32, 32),
    "mixed3b": BlockSpec(128, 128, 192, 32, 96, 64),
    "mixed4a": BlockSpec(192, 96, 204, 16, 48, 64),
    "mixed4b": BlockSpec(160, 112, 224, 24, 64, 64),
    "mixed4c": BlockSpec(128, 128, 256, 24, 64, 64),
    "mixed4d": BlockSpec(112, 144, 288, 32, 64, 64),
    "mixed4e": BlockSpec(256, 160, 320, 32, 128, 128),
    "mixed5a": BlockSpec(256, 160, 320, 48, 128, 128),
    "mixed5b": BlockSpec(384, 192, 384, 48, 128, 128),
}

_BVLC_BLOCKS = dict(_INCEPTION5H_BLOCKS, mixed4a=BlockSpec(192, 96, 208, 16, 48, 64),
                    mixed5a=BlockSpec(256, 160, 320, 32, 128, 128))

INCEPTIONV1 = NetSpec(
    name="inceptionv1",
    n_classes=1008,
    blocks=_INCEPTION5H_BLOCKS,
    padding="same",
    lrn={
        # TF graph: depth_radius 5, bias 2, alpha 1e-4, beta 0.5.
        "tf": LRNSpec(size=11, alpha=1e-4, beta=0.5, bias=2.0),
        # Lucent: torch local_response_norm(size=9, alpha=1e-4, beta=0.5, k=1), alpha/size.
        "lucent": LRNSpec(size=9, alpha=1e-4 / 9, beta=0.5, bias=1.0),
    },
    default_lrn="tf",
    input_mode="rgb_minus_117",
    aux_classes=1008,
    description="Lucid's InceptionV1 ('inception5h', TF DeepDream graph): 1008 classes, RGB*255-117.",
)

GOOGLENET_BVLC = NetSpec(
    name="googlenet_bvlc",
    n_classes=1000,
    blocks=_BVLC_BLOCKS,
    padding="caffe",
    lrn={"caffe": LRNSpec(size=5, alpha=1e-4 / 5, beta=0.75, bias=1.0)},
    default_lrn="caffe",
    input_mode="bgr_minus_mean",
    aux_classes=1000,
    description="BVLC GoogLeNet (Caffe model zoo): 1000 classes, BGR*255 minus (104, 117, 123).",
)

SPECS = {s.name: s for s in (INCEPTIONV1, GOOGLENET_BVLC)}

# Caffe conv padding for the stem (inception convs pad k//2 in both conventions).
CAFFE_STEM_PAD = {"conv2d0": 3, "conv2d1": 0, "conv2d2": 1}
