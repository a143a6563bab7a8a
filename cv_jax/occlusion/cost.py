"""What one forward pass costs: activation bytes (-> positions per chunk) and FLOPs."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from cv_jax.models import Network


def _layer_bytes(model: Network, layer: str, shape: Sequence[int]) -> int:
  """Bytes of all activations up to `layer` for one image (a bound on a forward's working set)."""
  names = model.layer_names[: model.layer_names.index(layer) + 1]
  out = jax.eval_shape(lambda p, x: model.apply(p, x, names), model.params(),
                       jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  return int(sum(4 * math.prod(v.shape) for v in out.values()))


def default_chunk(model: Network, layer: str, shape: Sequence[int] = (224, 224, 3),
                  budget: int | None = None) -> int:
  """Positions per forward pass: fits `budget` bytes of activations (default by backend).

  CPU: 4 positions (a 1 GiB budget capped at 4): small chunks keep each layer's windows in
  the caches; at mixed4a, 90 px occluder, two devices, 4 per chunk gave 159 positions/s, 8
  151, 16 139 and 32 132 (one interleaved run). GPU/TPU: a quarter of device memory, capped at
  512.
  """
  per = _layer_bytes(model, model.resolve(layer), shape)
  cpu = jax.default_backend() == "cpu"
  if budget is None:
    if cpu:
      budget = 1 << 30
    else:
      stats = jax.devices()[0].memory_stats() or {}
      budget = int(stats.get("bytes_limit", 16 << 30)) // 4
  cap = 4 if cpu else 512
  return int(max(1, min(cap, budget // max(per, 1))))


def forward_flops(model: Network, layer: str, shape: Sequence[int] = (224, 224, 3)) -> int:
  """Multiply-add FLOPs (2 per MAC) of the convolutions and dense layers of one forward pass
  truncated at `layer` (pooling, LRN, ReLU not counted)."""
  layer = model.resolve(layer)
  names = model.layer_names[: model.layer_names.index(layer) + 1]
  pre = [n for n in names if n.endswith("_pre_relu") or n.endswith("_pre_activation")]
  convs = model.spec.conv_layers(model.aux_heads)
  out = jax.eval_shape(lambda p, x: model.apply(p, x, pre), model.params(),
                       jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  total = 0
  for n in pre:
    base = n[: -len("_pre_relu")] if n.endswith("_pre_relu") else n[: -len("_pre_activation")]
    if base not in convs:
      continue  # block concats
    k, cin, cout = convs[base]
    spatial = math.prod(out[n].shape[1:-1]) if len(out[n].shape) == 4 else 1
    total += 2 * spatial * max(k, 1) ** 2 * cin * cout
  return total
