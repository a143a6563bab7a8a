"""`Network` (the Flax NNX module), `Unit` addresses, `load` and `available`."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cv_jax import weights as W
from cv_jax.models import network
from cv_jax.models.layers import RELU_MODES
from cv_jax.models.spec import BRANCHES, SPECS, NetSpec


class ConvParams(nnx.Module):
  """Kernel and bias of one convolution or dense layer."""

  def __init__(self, kernel, bias):
    self.kernel = nnx.Param(jnp.asarray(kernel, jnp.float32))
    self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))


class Network(nnx.Module):
  """A GoogLeNet variant with its weights: the one stateful object of cv_jax.

  Call it as `model(images, layers=("mixed4a_pre_relu",))` on NHWC float32 RGB images in [0, 1]
  (each model applies its own preprocessing); the result maps each requested name to its
  activation (NHWC for spatial layers, (N, classes) for logits and probabilities). Only the
  stages up to the deepest requested layer are computed.

  For jit-compiled jobs take `model.params()` (a plain pytree) and the pure `model.apply`.
  """

  def __init__(self, spec: NetSpec, params: Mapping, *, lrn: str | None = None,
               aux_heads: bool = False):
    if lrn is not None and lrn not in spec.lrn:
      raise ValueError(f"{spec.name} has no LRN variant {lrn!r}; choose one of {sorted(spec.lrn)}")
    params = W.validate(params, spec, aux_heads)
    self.spec = spec
    self.lrn = lrn or spec.default_lrn
    self.aux_heads = aux_heads
    self.layer_names = network.layer_names(spec, aux_heads)
    self.aliases = network.caffe_aliases(spec, aux_heads)
    self._param_names = tuple(params)
    for name, p in params.items():
      setattr(self, name, ConvParams(p["kernel"], p["bias"]))

  @property
  def name(self) -> str:
    return self.spec.name

  @property
  def n_classes(self) -> int:
    return self.spec.n_classes

  def params(self) -> dict[str, dict[str, jax.Array]]:
    """The parameters as a plain pytree {layer: {"kernel", "bias"}} (for jit arguments)."""
    return {n: {"kernel": getattr(self, n).kernel.value, "bias": getattr(self, n).bias.value}
            for n in self._param_names}

  def resolve(self, layer: str) -> str:
    """Canonical (Lucid) name of `layer`; Caffe names are accepted for googlenet_bvlc."""
    return network.resolve_layer(layer, self.layer_names, self.aliases)

  def apply(self, params, images: jax.Array, layers: Sequence[str] | None = None, *,
            relu: str = "standard", step=None) -> dict[str, jax.Array]:
    """Pure forward pass with explicit parameters; returns activations keyed as requested."""
    names = None if layers is None else [self.resolve(l) for l in layers]
    if relu not in RELU_MODES:
      raise ValueError(f"unknown relu mode {relu!r}; choose one of {RELU_MODES}")
    out = network.apply(self.spec, params, images, names, lrn=self.lrn, relu=relu, step=step,
                        aux_heads=self.aux_heads)
    if layers is None:
      return out
    return {given: out[canon] for given, canon in zip(layers, names)}

  def __call__(self, images: jax.Array, layers: Sequence[str] | None = None, *,
               relu: str = "standard", step=None) -> dict[str, jax.Array]:
    if isinstance(layers, str):
      layers = (layers,)
    return self.apply(self.params(), jnp.asarray(images, jnp.float32), layers, relu=relu, step=step)

  def channels(self, layer: str) -> int:
    """Number of channels (last axis) of a layer."""
    if not hasattr(self, "_channels"):
      # One abstract evaluation of every layer (no FLOPs); cached on the instance.
      shapes = jax.eval_shape(
          lambda p, x: network.apply(self.spec, p, x, None, lrn=self.lrn, aux_heads=self.aux_heads),
          self.params(), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
      object.__setattr__(self, "_channels", {k: v.shape[-1] for k, v in shapes.items()})
    return self._channels[self.resolve(layer)]

  def program(self, key: tuple, build: Callable[[], Any]) -> Any:
    """The compiled program `key` of this network, made by `build()` the first time.

    Jobs (feature visualisation, occlusion, the sweep) keep the programs they jit for a
    network here, so a program lives as long as the network it was traced with and is never
    handed to another network that happens to reuse a freed one's `id`.
    """
    if not hasattr(self, "_programs"):
      object.__setattr__(self, "_programs", {})
    if key not in self._programs:
      self._programs[key] = build()
    return self._programs[key]

  def branch_offsets(self, block: str) -> dict[str, int]:
    """Start channel of each branch ("1x1", "3x3", "5x5", "pool") in `block`'s concat."""
    if block not in self.spec.blocks:
      raise ValueError(f"{block!r} is not an inception block of {self.name}; "
                       f"blocks: {', '.join(self.spec.blocks)}")
    return self.spec.blocks[block].offsets()

  def __repr__(self) -> str:
    return f"Network({self.name!r}, lrn={self.lrn!r}, aux_heads={self.aux_heads})"


@dataclasses.dataclass(frozen=True)
class Unit:
  """One channel of a layer: `Unit("mixed4a_pre_relu", 476)`.

  Parse with `Unit.parse("mixed4a_pre_relu:476", model)` or, by branch,
  `Unit.parse("mixed4a/pool:32", model)` (block, branch, index within the branch), which
  addresses the pre-ReLU concat `mixed4a_pre_relu` like the paper's units. The same branch
  address maps to different concat indices in the two networks (mixed4a's 3x3 branch has 204
  channels in inceptionv1 and 208 in googlenet_bvlc).
  """
  layer: str
  channel: int

  @classmethod
  def parse(cls, text: "str | Unit", model: Network) -> "Unit":
    """Parse "layer:index" or "block/branch:index" for `model` (validating both)."""
    if isinstance(text, Unit):
      return cls.from_channel(text.layer, text.channel, model)
    m = re.match(r"^(.+?)(?:/(1x1|3x3|5x5|pool))?:(-?\d+)$", text.strip())
    if not m:
      raise ValueError(f"cannot parse unit {text!r}; use 'layer:index' (e.g. "
                       f"'mixed4a_pre_relu:476') or 'block/branch:index' (e.g. 'mixed4a/pool:32')")
    layer, branch, idx = m.group(1), m.group(2), int(m.group(3))
    if branch:
      return cls.from_branch(layer, branch, idx, model)
    return cls.from_channel(layer, idx, model)

  @classmethod
  def from_channel(cls, layer: str, channel: int, model: Network) -> "Unit":
    layer = model.resolve(layer)
    n = model.channels(layer)
    if not 0 <= channel < n:
      raise ValueError(f"channel {channel} out of range for {layer} ({n} channels)")
    return cls(layer, channel)

  @classmethod
  def from_branch(cls, block: str, branch: str, index: int, model: Network) -> "Unit":
    if branch not in BRANCHES:
      raise ValueError(f"unknown branch {branch!r}; choose one of {BRANCHES}")
    offsets = model.branch_offsets(block)
    size = model.spec.blocks[block].branch_sizes[BRANCHES.index(branch)]
    if not 0 <= index < size:
      raise ValueError(f"index {index} out of range for {block}/{branch} ({size} channels)")
    return cls(f"{block}_pre_relu", offsets[branch] + index)

  def branch(self, model: Network) -> tuple[str, str, int]:
    """(block, branch, index within branch) of a unit of a block concat layer."""
    block = self.layer[: -len("_pre_relu")] if self.layer.endswith("_pre_relu") else self.layer
    offsets = model.branch_offsets(block)
    sizes = model.spec.blocks[block].branch_sizes
    for (b, start), size in zip(offsets.items(), sizes):
      if start <= self.channel < start + size:
        return block, b, self.channel - start
    raise ValueError(f"channel {self.channel} out of range for {block}")

  def branch_str(self, model: Network) -> str:
    block, b, i = self.branch(model)
    return f"{block}/{b}:{i}"

  def __str__(self) -> str:
    return f"{self.layer}:{self.channel}"


def available() -> tuple[str, ...]:
  """Names of the models `load` knows."""
  return tuple(SPECS)


def load(name: str, weights: str | os.PathLike | None = None, *, lrn: str | None = None,
         aux_heads: bool = False, download: bool = True, random_init: int | None = None) -> Network:
  """Build model `name` with its weights.

  `weights`: a path to any supported file (cv_jax checkpoint directory, Caffe-blob .npz,
  .caffemodel, Lucent .pth, TF .pb). Without it, `$CV_JAX_HOME/<name>/` (default
  `~/.cache/cv_jax`) is searched, then the official file is downloaded and checked.
  `random_init=SEED` builds random weights instead (tests, benchmarks).
  Options: `lrn="tf"|"lucent"` (inceptionv1), `aux_heads=True` for the auxiliary classifiers.
  """
  if name not in SPECS:
    import difflib
    close = difflib.get_close_matches(name, list(SPECS), n=3)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(SPECS)}"
                     + (f" (did you mean {close[0]!r}?)" if close else ""))
  spec = SPECS[name]
  if random_init is not None:
    params = W.init_params(spec, random_init, aux_heads)
  else:
    path = W.resolve(name, weights, download=download)
    params = W.read_params(path, spec, aux_heads)
  return Network(spec, params, lrn=lrn, aux_heads=aux_heads)
