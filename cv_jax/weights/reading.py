"""Reading parameters from any supported file, chosen by its suffix (or a checkpoint directory)."""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from cv_jax.weights import mappings as M
from cv_jax.weights.checkpoint import load_checkpoint
from cv_jax.weights.errors import WeightsError
from cv_jax.weights.formats import caffe, tf_graph, torch_pickle
from cv_jax.weights.validation import validate

if TYPE_CHECKING:
  from cv_jax.models.spec import NetSpec

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
      if any(k.endswith("/kernel") for k in arrays):  # cv_jax's own "<layer>/kernel", "/bias"
        raw = M.from_flat_arrays(arrays)
      else:
        raw = M.from_caffe_blobs(arrays, spec, aux_heads)
    elif suffix == ".caffemodel":
      raw = M.from_caffe_blobs(caffe.read_caffemodel(path), spec, aux_heads)
    elif suffix in (".pth", ".pt"):
      raw = M.from_torch_state_dict(torch_pickle.load_state_dict(path), spec, aux_heads)
    elif suffix == ".pb":
      raw = M.from_tf_consts(tf_graph.read_constants(path), spec, aux_heads)
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

