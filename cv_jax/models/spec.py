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


BRANCH_CONVS = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")


@dataclasses.dataclass(frozen=True)
class Op:
  """One step of the forward pass, in the order the network runs them.

  kind: "conv" (a convolution and its ReLU: layers `<name>_pre_relu`, `<name>`), "maxpool"
  (3x3 window), "lrn", "block" (an inception block), "aux_head" (an auxiliary classifier
  reading the current map without changing it) or "classifier" (global average pool, dense
  layer, softmax). `kernel`, `stride`, `out`: a conv's kernel size, stride and out channels
  (a max-pool's stride).
  """
  kind: str
  name: str
  kernel: int = 0
  stride: int = 1
  out: int = 0

  @property
  def layers(self) -> tuple[str, ...]:
    """The named layers (Lucid's names) this step produces, in order."""
    n = self.name
    if self.kind == "conv":
      return (f"{n}_pre_relu", n)
    if self.kind in ("maxpool", "lrn"):
      return (n,)
    if self.kind == "block":
      names = []
      for b in BRANCH_CONVS:
        names += [f"{n}_{b}_pre_relu", f"{n}_{b}"]
        if b == "5x5":
          names.append(f"{n}_pool")
      return (*names, f"{n}_pre_relu", n)
    if self.kind == "aux_head":
      _, nn, soft = next(v for v in AUX_AFTER.values() if v[0] == n)
      return (f"{n}_pool", f"{n}_bottleneck_pre_relu", f"{n}_bottleneck", f"{nn}_pre_relu", nn,
              f"{soft}_pre_activation", soft)
    if self.kind == "classifier":
      return ("avgpool0", f"{n}_pre_activation", n)
    raise ValueError(f"unknown op kind {self.kind!r}")


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

  def ops(self, aux_heads: bool = False) -> tuple[Op, ...]:
    """The network's topology: every step of the forward pass, in order.

    `network.apply`, the parameter table (`conv_layers`) and occlusion's incremental forward
    pass all walk this one list. Stem: 7x7/2 conv, pool, LRN, 1x1 conv, 3x3 conv, LRN, pool;
    then the inception blocks (a stride-2 max-pool before mixed4a and mixed5a), the auxiliary
    heads after mixed4a and mixed4d when `aux_heads`, and the classifier.
    """
    ops = [Op("conv", "conv2d0", 7, 2, 64), Op("maxpool", "maxpool0", stride=2),
           Op("lrn", "localresponsenorm0"), Op("conv", "conv2d1", 1, 1, 64),
           Op("conv", "conv2d2", 3, 1, 192), Op("lrn", "localresponsenorm1"),
           Op("maxpool", "maxpool1", stride=2)]
    for block in self.blocks:
      if POOL_BEFORE.get(block):
        ops.append(Op("maxpool", POOL_BEFORE[block], stride=2))
      ops.append(Op("block", block))
      if aux_heads and block in AUX_AFTER:
        ops.append(Op("aux_head", AUX_AFTER[block][0]))
    ops.append(Op("classifier", "softmax2"))
    return tuple(ops)

  def conv_layers(self, aux_heads: bool) -> dict[str, tuple[int, int, int]]:
    """Parameter name -> (kernel size, in channels, out channels), in forward order.

    Fully connected layers are listed with kernel size 0.
    """
    convs = {}
    cin = 3
    for op in self.ops(aux_heads):
      if op.kind == "conv":
        convs[op.name] = (op.kernel, cin, op.out)
        cin = op.out
      elif op.kind == "block":
        b = self.blocks[op.name]
        for conv, k, c_in, c_out in (("1x1", 1, cin, b.c1), ("3x3_bottleneck", 1, cin, b.c3r),
                                     ("3x3", 3, b.c3r, b.c3), ("5x5_bottleneck", 1, cin, b.c5r),
                                     ("5x5", 5, b.c5r, b.c5), ("pool_reduce", 1, cin, b.cp)):
          convs[f"{op.name}_{conv}"] = (k, c_in, c_out)
        cin = b.out
      elif op.kind == "aux_head":
        _, nn, soft = next(v for v in AUX_AFTER.values() if v[0] == op.name)
        convs[f"{op.name}_bottleneck"] = (1, cin, 128)
        convs[nn] = (0, 128 * 4 * 4, 1024)
        convs[soft] = (0, 1024, self.aux_classes)
      elif op.kind == "classifier":
        convs[op.name] = (0, cin, self.n_classes)
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
