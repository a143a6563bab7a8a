"""Parameter shapes of a network, their validation, and random parameters.

Parameters are a plain pytree `{layer: {"kernel": array, "bias": array}}` with Lucid layer names,
convolution kernels in HWIO and dense kernels as (in, out). The auxiliary heads' first dense
layer expects its input flattened in (h, w, c) order, as in the TF graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from cv_jax.weights.errors import WeightsError

if TYPE_CHECKING:
  from cv_jax.models.spec import NetSpec


def param_shapes(spec: NetSpec, aux_heads: bool = False) -> dict[str, dict[str, tuple[int, ...]]]:
  """Expected shape of every parameter: {layer: {"kernel": shape, "bias": shape}}."""
  shapes = {}
  for name, (k, cin, cout) in spec.conv_layers(aux_heads).items():
    kernel = (cin, cout) if k == 0 else (k, k, cin, cout)
    shapes[name] = {"kernel": kernel, "bias": (cout,)}
  return shapes


def init_params(spec: NetSpec, seed: int = 0, aux_heads: bool = False) -> dict[str, dict[str, np.ndarray]]:
  """Random parameters (He-normal kernels, small random biases), for tests and benchmarks."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, shp in param_shapes(spec, aux_heads).items():
    fan_in = int(np.prod(shp["kernel"][:-1]))
    params[name] = {
        "kernel": (rng.standard_normal(shp["kernel"]) * np.sqrt(2.0 / fan_in)).astype(np.float32),
        "bias": (rng.standard_normal(shp["bias"]) * 0.1).astype(np.float32),
    }
  return params


def validate(params: Mapping[str, Mapping[str, Any]], spec: NetSpec, aux_heads: bool = False,
             source: str = "weights") -> dict[str, dict[str, np.ndarray]]:
  """Check names, shapes and finiteness; return float32 numpy parameters or raise WeightsError.

  All problems are collected and reported at once, each naming the tensor.
  """
  expected = param_shapes(spec, aux_heads)
  problems = []
  missing = [f"{l}/{k}" for l, d in expected.items() for k in d
             if l not in params or k not in params[l]]
  extra = [f"{l}/{k}" for l, d in params.items() for k in d
           if l not in expected or k not in expected[l]]
  if missing:
    problems.append(f"missing tensors: {', '.join(missing)}")
  if extra:
    problems.append(f"unexpected tensors: {', '.join(extra)}")
  out = {}
  for layer, d in expected.items():
    out[layer] = {}
    for key, shape in d.items():
      if layer not in params or key not in params[layer]:
        continue
      arr = np.asarray(params[layer][key], dtype=np.float32)
      if arr.shape != shape:
        problems.append(f"shape mismatch for {layer}/{key}: expected {shape}, found {arr.shape}")
      elif not np.all(np.isfinite(arr)):
        problems.append(f"non-finite values (NaN/Inf) in {layer}/{key}")
      out[layer][key] = arr
  if problems:
    raise WeightsError(f"{source} do not fit {spec.name}: " + "; ".join(problems))
  return out
