"""Mapping each source format's tensor names and layouts onto the parameter pytree.

Every `from_*` function returns `{layer: {"kernel", "bias"}}` (plus `"<unmatched>"` for source
tensors it could not place); `cv_jax.weights.validation.validate` then checks the result, so every
source gets the same errors. Caffe's (c, h, w) flattening of the auxiliary heads' first dense
layer is permuted to the TF graph's (h, w, c) order here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
  from cv_jax.models.spec import NetSpec


def caffe_layer(ours: str, spec: NetSpec) -> str:
  """Caffe layer name of one of our parameter names (BVLC naming)."""
  stem = {"conv2d0": "conv1/7x7_s2", "conv2d1": "conv2/3x3_reduce", "conv2d2": "conv2/3x3",
          "softmax2": "loss3/classifier"}
  if ours in stem:
    return stem[ours]
  for i, (head, nn, soft) in enumerate(spec.aux_after.values(), start=1):
    aux = {f"{head}_bottleneck": "conv", nn: "fc", soft: "classifier"}
    if ours in aux:
      return f"loss{i}/{aux[ours]}"
  block, branch = ours.split("_", 1)
  branch = {"3x3_bottleneck": "3x3_reduce", "5x5_bottleneck": "5x5_reduce",
            "pool_reduce": "pool_proj"}.get(branch, branch)
  return f"inception_{block[len('mixed'):]}/{branch}"


def from_caffe_blobs(blobs: Mapping[str, np.ndarray], spec: NetSpec, aux_heads: bool = False) -> dict:
  """Map Caffe blobs `{"<caffe layer>/weights": OIHW or (out, in), "<layer>/bias": (out,)}`.

  Layers without our counterpart (e.g. the auxiliary heads when `aux_heads=False`) are ignored;
  any of ours that is absent is reported as missing by `validate`.
  """
  params = {}
  for ours, (k, cin, cout) in spec.conv_layers(aux_heads).items():
    theirs = caffe_layer(ours, spec)
    entry = {}
    if f"{theirs}/weights" in blobs:
      w = np.asarray(blobs[f"{theirs}/weights"], np.float32)
      if k == 0:
        w = w.reshape(w.shape[0], -1)
        if ours.startswith("nn") and w.shape[1] == cin:
          # Caffe flattens (c, h, w); our heads flatten (h, w, c).
          w = w.reshape(w.shape[0], 128, 4, 4).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        entry["kernel"] = w.T
      else:
        entry["kernel"] = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w
    if f"{theirs}/bias" in blobs:
      entry["bias"] = np.asarray(blobs[f"{theirs}/bias"], np.float32).reshape(-1)
    if entry:
      params[ours] = entry
  used = {f"{caffe_layer(o, spec)}/{s}" for o in params for s in ("weights", "bias")}
  unknown = sorted(k for k in blobs if k not in used and not _is_aux_caffe(k, aux_heads))
  if unknown:
    params["<unmatched>"] = {k: blobs[k] for k in unknown}
  return params


def _is_aux_caffe(key: str, aux_heads: bool) -> bool:
  return not aux_heads and key.startswith(("loss1/", "loss2/"))


def from_torch_state_dict(sd: Mapping[str, np.ndarray], spec: NetSpec, aux_heads: bool = False) -> dict:
  """Map Lucent's InceptionV1 state dict (`<layer>_pre_relu_conv.weight`, OIHW) to parameters."""
  params: dict[str, dict[str, np.ndarray]] = {}
  unmatched = {}
  for key, value in sd.items():
    base, _, kind = key.rpartition(".")
    layer = base
    for suffix in ("_pre_relu_conv", "_pre_activation_matmul", "_pre_relu_matmul"):
      if layer.endswith(suffix):
        layer = layer[: -len(suffix)]
        break
    if kind not in ("weight", "bias"):
      unmatched[key] = value
      continue
    w = np.asarray(value, np.float32)
    if kind == "weight":
      w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
    params.setdefault(layer, {})["kernel" if kind == "weight" else "bias"] = w
  if unmatched:
    params["<unmatched>"] = unmatched
  return params


def from_tf_consts(consts: Mapping[str, np.ndarray], spec: NetSpec, aux_heads: bool = False) -> dict:
  """Map the TF graph's Const nodes (`<layer>_w` HWIO / (in, out), `<layer>_b`) to parameters."""
  params = {}
  for ours in spec.conv_layers(aux_heads):
    entry = {}
    if f"{ours}_w" in consts:
      entry["kernel"] = np.asarray(consts[f"{ours}_w"], np.float32)
    if f"{ours}_b" in consts:
      entry["bias"] = np.asarray(consts[f"{ours}_b"], np.float32)
    if entry:
      params[ours] = entry
  return params


def from_flat_arrays(arrays: Mapping[str, np.ndarray]) -> dict:
  """Map cv_jax's own flat `.npz` arrays (`"<layer>/kernel"`, `"<layer>/bias"`) to parameters."""
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in arrays.items():
    layer, _, kind = key.rpartition("/")
    params.setdefault(layer, {})[kind] = value
  return params
