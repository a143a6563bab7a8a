"""Weights: parameter shapes, validation, mapping from source formats, checkpoints, resolution.

Parameters are a plain pytree `{layer: {"kernel": array, "bias": array}}` with Lucid layer names,
convolution kernels in HWIO and dense kernels as (in, out). The auxiliary heads' first dense
layer expects its input flattened in (h, w, c) order, as in the TF graph; Caffe's (c, h, w)
order is permuted on conversion.

Source formats and the readers that understand them live in `cv_jax.convert`; this module maps
what they read onto the parameter pytree and checks it, so every source gets the same errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import urllib.request
from typing import Any, Mapping

import numpy as np

from cv_jax.models.spec import AUX_AFTER, NetSpec

CHECKPOINT_VERSION = 1


class WeightsError(ValueError):
  """A weights file cannot be turned into a valid parameter set (nothing was loaded)."""


# --- shapes and validation -----------------------------------------------------------------------

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


# --- mapping from source naming conventions -------------------------------------------------------

def _caffe_layer(ours: str) -> str:
  """Caffe layer name of one of our parameter names (BVLC naming)."""
  stem = {"conv2d0": "conv1/7x7_s2", "conv2d1": "conv2/3x3_reduce", "conv2d2": "conv2/3x3",
          "softmax2": "loss3/classifier"}
  if ours in stem:
    return stem[ours]
  for i, (head, nn, soft) in enumerate(AUX_AFTER.values(), start=1):
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
    theirs = _caffe_layer(ours)
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
  used = {f"{_caffe_layer(o)}/{s}" for o in params for s in ("weights", "bias")}
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


# --- reading any supported file ------------------------------------------------------------------

FORMATS = ("cv_jax checkpoint (orbax directory)", ".npz (Caffe blobs or cv_jax arrays)",
           ".caffemodel", ".pth/.pt (PyTorch state dict)", ".pb (TF GraphDef)")


def read_params(path: str | os.PathLike, spec: NetSpec, aux_heads: bool = False) -> dict:
  """Read and validate parameters from any supported file for `spec`. Raises WeightsError."""
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise WeightsError(f"weights file not found: {path}")
  suffix = path.suffix.lower()
  try:
    if path.is_dir():
      return load_checkpoint(path, spec, aux_heads)
    if suffix == ".npz":
      with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
      if any(k.endswith(("/weights", "/bias")) for k in arrays):
        raw = from_caffe_blobs(arrays, spec, aux_heads)
      else:
        raw = _unflatten(arrays)
    elif suffix == ".caffemodel":
      from cv_jax.convert import caffe
      raw = from_caffe_blobs(caffe.read_caffemodel(path), spec, aux_heads)
    elif suffix in (".pth", ".pt"):
      from cv_jax.convert import torch_pickle
      raw = from_torch_state_dict(torch_pickle.load_state_dict(path), spec, aux_heads)
    elif suffix == ".pb":
      from cv_jax.convert import tf_graph
      raw = from_tf_consts(tf_graph.read_constants(path), spec, aux_heads)
    else:
      raise WeightsError(f"unknown weights file type {suffix!r} for {path}; supported: "
                         + ", ".join(FORMATS))
  except WeightsError:
    raise
  except Exception as e:  # a parser failing on a corrupt file
    raise WeightsError(f"cannot read {path}: {type(e).__name__}: {e}") from e
  unmatched = raw.pop("<unmatched>", None)
  if unmatched:
    raise WeightsError(f"{path} does not fit {spec.name}: unexpected tensors: "
                       + ", ".join(sorted(unmatched)))
  return validate(raw, spec, aux_heads, source=str(path))


def _unflatten(arrays: Mapping[str, np.ndarray]) -> dict:
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in arrays.items():
    layer, _, kind = key.rpartition("/")
    params.setdefault(layer, {})[kind] = value
  return params


# --- the project's own checkpoint (orbax) ---------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, params: Mapping, spec: NetSpec,
                    aux_heads: bool = False, source: str = "") -> pathlib.Path:
  """Write validated parameters as an orbax checkpoint directory (plus `cv_jax.json` metadata)."""
  import orbax.checkpoint as ocp
  params = validate(params, spec, aux_heads)
  path = pathlib.Path(path).expanduser().absolute()
  if path.exists():
    raise WeightsError(f"{path} already exists; remove it or choose another output path")
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=".cv_jax_ckpt_", dir=path.parent))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp / "params", params)
    meta = {"format": "cv_jax", "version": CHECKPOINT_VERSION, "model": spec.name,
            "aux_heads": aux_heads, "source": source}
    (tmp / "cv_jax.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def load_checkpoint(path: str | os.PathLike, spec: NetSpec, aux_heads: bool = False) -> dict:
  """Read a checkpoint written by `save_checkpoint` and validate it against `spec`."""
  import orbax.checkpoint as ocp
  path = pathlib.Path(path).expanduser().absolute()
  meta_file = path / "cv_jax.json"
  if not meta_file.exists():
    raise WeightsError(f"{path} is not a cv_jax checkpoint (no cv_jax.json)")
  meta = json.loads(meta_file.read_text())
  if meta.get("model") != spec.name:
    raise WeightsError(f"{path} holds weights for {meta.get('model')!r}, not {spec.name!r}")
  with ocp.StandardCheckpointer() as ckptr:
    raw = ckptr.restore(path / "params")
  if not aux_heads:
    raw = {k: v for k, v in raw.items() if k in param_shapes(spec, False)}
  return validate(raw, spec, aux_heads, source=str(path))


# --- resolution and download ---------------------------------------------------------------------

# Official files of the models that `cv_jax.assets` does not catalogue (googlenet_bvlc is there).
# `sha1`/`sha256`: digests published with the file; `size`: its byte count.
OFFICIAL = {
    "inceptionv1": {
        "url": "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
        "filename": "inception5h.pth",
        "size": 28_283_262,  # no digest is published for this file
    },
}

# Names looked for in $CV_JAX_HOME/<model>/, in order.
LOCAL_NAMES = ("checkpoint", "bvlc_googlenet_blobs.npz", "bvlc_googlenet.caffemodel",
               "inception5h.pth", "tensorflow_inception_graph.pb", "InceptionV1.pb")


def cache_dir() -> pathlib.Path:
  """`$CV_JAX_HOME`, default `~/.cache/cv_jax`."""
  return pathlib.Path(os.environ.get("CV_JAX_HOME", "~/.cache/cv_jax")).expanduser()


def resolve(name: str, weights: str | os.PathLike | None = None, download: bool = True) -> pathlib.Path:
  """Find the weights file for model `name`: explicit path, shared folder, cache, download.

  The shared folder and the checked download of the BVLC weights are `cv_jax.assets`'.
  """
  from cv_jax import assets
  if weights is not None:
    p = pathlib.Path(weights).expanduser()
    if not p.exists():
      raise WeightsError(f"weights file not found: {p}")
    return p
  if name in assets.ASSETS:
    try:
      return assets.locate(name, download=download)
    except assets.AssetError as e:
      raise WeightsError(str(e)) from None
  local = cache_dir() / name
  for fname in LOCAL_NAMES:
    if (local / fname).exists():
      return local / fname
  how = (f"pass weights=PATH (CLI: --weights=PATH) with a file you have, or put one of "
         f"{', '.join(LOCAL_NAMES)} into {local}")
  if not download or name not in OFFICIAL:
    raise WeightsError(f"no weights for {name!r} found. {how}")
  info = OFFICIAL[name]
  target = local / info["filename"]
  try:
    _download(info, target)
  except Exception as e:
    raise WeightsError(f"could not download {info['url']} ({type(e).__name__}: {e}). {how}") from e
  return target


def _download(info: Mapping[str, Any], target: pathlib.Path) -> None:
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.with_suffix(target.suffix + ".part")
  digests = {k: hashlib.new(k) for k in ("sha1", "sha256") if k in info}
  size = 0
  try:
    with urllib.request.urlopen(info["url"], timeout=60) as r, open(tmp, "wb") as f:
      while chunk := r.read(1 << 20):
        f.write(chunk)
        size += len(chunk)
        for h in digests.values():
          h.update(chunk)
  except BaseException:
    tmp.unlink(missing_ok=True)  # no partial download left behind
    raise
  for algo, h in digests.items():
    if h.hexdigest() != info[algo]:
      tmp.unlink(missing_ok=True)
      raise WeightsError(f"{algo} mismatch for {info['url']}: got {h.hexdigest()}")
  if "size" in info and size != info["size"]:
    tmp.unlink(missing_ok=True)
    raise WeightsError(f"size mismatch for {info['url']}: got {size} bytes, expected {info['size']}")
  tmp.rename(target)
