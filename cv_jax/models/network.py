"""The GoogLeNet forward pass as a pure function, and the Flax NNX module that holds the weights.

`apply(spec, params, images, layers)` is the whole network as a pure function of a parameter
pytree: feature visualisation, occlusion and the sweep jit it with the parameters as arguments.
`Network` is the only stateful object of cv_jax: an `nnx.Module` holding the parameters, whose
`__call__` forwards to `apply`.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp

from cv_jax.models import layers as L
from cv_jax.models.spec import AUX_AFTER, CAFFE_STEM_PAD, NetSpec

Params = Mapping[str, Mapping[str, jax.Array]]

_CAFFE_BRANCH = {"1x1": "1x1", "3x3_bottleneck": "3x3_reduce", "3x3": "3x3",
                 "5x5_bottleneck": "5x5_reduce", "5x5": "5x5", "pool_reduce": "pool_proj",
                 "pool": "pool"}


# --- layer names ---------------------------------------------------------------------------------

def layer_names(spec: NetSpec, aux_heads: bool = False) -> tuple[str, ...]:
  """Every named layer of the network, in forward order (Lucid's names)."""
  return tuple(n for op in spec.ops(aux_heads) for n in op.layers)


def caffe_aliases(spec: NetSpec, aux_heads: bool = False) -> dict[str, str]:
  """Caffe blob names -> Lucid layer names (BVLC GoogLeNet only).

  Caffe's ReLUs are in place, so a convolution's blob holds its post-ReLU output:
  `conv1/7x7_s2` is `conv2d0`, `inception_4a/3x3` is `mixed4a_3x3`.
  """
  if spec.padding != "caffe":
    return {}
  a = {"conv1/7x7_s2": "conv2d0", "pool1/3x3_s2": "maxpool0", "pool1/norm1": "localresponsenorm0",
       "conv2/3x3_reduce": "conv2d1", "conv2/3x3": "conv2d2", "conv2/norm2": "localresponsenorm1",
       "pool2/3x3_s2": "maxpool1", "pool3/3x3_s2": "maxpool4", "pool4/3x3_s2": "maxpool10",
       "pool5/7x7_s1": "avgpool0", "loss3/classifier": "softmax2_pre_activation",
       "prob": "softmax2"}
  for block in spec.blocks:
    caffe = "inception_" + block[len("mixed"):]
    for ours, theirs in _CAFFE_BRANCH.items():
      a[f"{caffe}/{theirs}"] = f"{block}_{ours}"
    a[f"{caffe}/output"] = block
  if aux_heads:
    for i, (head, nn, soft) in enumerate(AUX_AFTER.values(), start=1):
      a.update({f"loss{i}/ave_pool": f"{head}_pool", f"loss{i}/conv": f"{head}_bottleneck",
                f"loss{i}/fc": nn, f"loss{i}/classifier": f"{soft}_pre_activation"})
  return a


def resolve_layer(name: str, names: Sequence[str], aliases: Mapping[str, str]) -> str:
  """Canonical name of a layer, or a ValueError listing close matches."""
  if name in names:
    return name
  if name in aliases:
    return aliases[name]
  close = difflib.get_close_matches(name, list(names) + list(aliases), n=5, cutoff=0.5)
  hint = f" Did you mean: {', '.join(close)}?" if close else ""
  raise ValueError(f"unknown layer {name!r}.{hint} (model.layer_names lists all layers)")


# --- forward pass --------------------------------------------------------------------------------

def preprocess(spec: NetSpec, images: jax.Array) -> jax.Array:
  """Map [0, 1] RGB images to the network's input range."""
  x = images * 255.0
  if spec.input_mode == "rgb_minus_117":
    return x - 117.0
  if spec.input_mode == "bgr_minus_mean":
    return x[..., ::-1] - jnp.asarray([104.0, 117.0, 123.0], x.dtype)
  raise ValueError(spec.input_mode)


def apply(spec: NetSpec, params: Params, images: jax.Array,
          layers: Iterable[str] | None = None, *, lrn: str | None = None,
          relu: str = "standard", step: jax.Array | int | None = None,
          aux_heads: bool = False) -> dict[str, jax.Array]:
  """Run the network on NHWC RGB images in [0, 1] and return the requested layers.

  Only the stages up to the deepest requested layer are computed. `relu` picks the ReLU
  gradient ("standard", "lucent", "lucid"); `step` feeds Lucid's redirection schedule.
  Names must already be canonical (see `Network.resolve`).
  """
  names = layer_names(spec, aux_heads)
  wanted = set(names if layers is None else layers)
  unknown = wanted - set(names)
  if unknown:
    raise ValueError(f"unknown layers {sorted(unknown)}")
  if not wanted:
    raise ValueError("no layers requested; pass layer names, or layers=None for all")
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be NHWC with 3 channels, got shape {images.shape}")
  lrn_spec = spec.lrn[lrn or spec.default_lrn]
  caffe = spec.padding == "caffe"
  pool_mode = "caffe" if caffe else "same"
  out: dict[str, jax.Array] = {}
  ops = spec.ops(aux_heads)
  last = max(i for i, op in enumerate(ops) if wanted & set(op.layers))

  def keep(name, value):
    if name in wanted:
      out[name] = value
    return value

  def conv(name, x, stride=1):
    p = params[name]
    k = p["kernel"].shape[0]
    if caffe:
      pad = CAFFE_STEM_PAD.get(name, k // 2)
      padding = [(pad, pad), (pad, pad)]
    else:
      padding = "SAME"
    y = keep(f"{name}_pre_relu", L.conv2d(x, p["kernel"], p["bias"], stride, padding))
    return y, keep(name, L.relu(y, relu, step))

  def maxpool(name, x, stride, pad=0):
    pads = L.pool_padding(x, 3, stride, pool_mode, pad)
    return keep(name, L.max_pool(x, 3, stride, pads))

  def dense(name, x):
    return x @ params[name]["kernel"] + params[name]["bias"]

  def block(b, x):
    p1, b1 = conv(f"{b}_1x1", x)
    p3, b3 = conv(f"{b}_3x3", conv(f"{b}_3x3_bottleneck", x)[1])
    p5, b5 = conv(f"{b}_5x5", conv(f"{b}_5x5_bottleneck", x)[1])
    pp, bp = conv(f"{b}_pool_reduce", maxpool(f"{b}_pool", x, 1, pad=1))
    # Lucid's `<block>_pre_relu`: the concat of the four branch pre-activations.
    keep(f"{b}_pre_relu", jnp.concatenate([p1, p3, p5, pp], axis=-1))
    return keep(b, jnp.concatenate([b1, b3, b5, bp], axis=-1))

  def aux_head(head, x):
    _, nn, soft = next(v for v in AUX_AFTER.values() if v[0] == head)
    h = keep(f"{head}_pool", L.avg_pool_valid(x, 5, 3))
    _, h = conv(f"{head}_bottleneck", h)
    h = h.reshape(h.shape[0], -1)
    h = keep(f"{nn}_pre_relu", dense(nn, h))
    h = keep(nn, L.relu(h, relu, step))
    logits = keep(f"{soft}_pre_activation", dense(soft, h))
    keep(soft, jax.nn.softmax(logits, axis=-1))

  def classifier(name, x):
    h = keep("avgpool0", jnp.mean(x, axis=(1, 2), keepdims=True))
    logits = keep(f"{name}_pre_activation", dense(name, h.reshape(h.shape[0], -1)))
    keep(name, jax.nn.softmax(logits, axis=-1))

  # Computed in the parameters' dtype: float32, or float64 for reference checks (jax x64 mode).
  x = preprocess(spec, images.astype(params["conv2d0"]["kernel"].dtype))
  for op in ops[:last + 1]:
    if op.kind == "conv":
      _, x = conv(op.name, x, op.stride)
    elif op.kind == "maxpool":
      x = maxpool(op.name, x, op.stride)
    elif op.kind == "lrn":
      x = keep(op.name, L.lrn(x, **vars(lrn_spec)))
    elif op.kind == "block":
      x = block(op.name, x)
    elif op.kind == "aux_head":
      aux_head(op.name, x)  # reads the block's output; the main path continues from x
    elif op.kind == "classifier":
      classifier(op.name, x)
  return {n: out[n] for n in (layers if layers is not None else names) if n in out}
