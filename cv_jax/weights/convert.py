"""`convert`: any supported weights file -> the project's orbax checkpoint, with its provenance."""

from __future__ import annotations

import hashlib
import os
import pathlib

from cv_jax.models.spec import SPECS
from cv_jax.weights.checkpoint import save_checkpoint
from cv_jax.weights.errors import WeightsError
from cv_jax.weights.reading import read_params


def file_sha256(path: str | os.PathLike) -> str:
  """sha256 of a file, or of a directory's files (relative paths and contents, sorted)."""
  path = pathlib.Path(path)
  h = hashlib.sha256()
  files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
  for p in files:
    if path.is_dir():
      h.update(str(p.relative_to(path)).encode() + b"\0")
    with open(p, "rb") as f:
      while chunk := f.read(1 << 20):
        h.update(chunk)
  return h.hexdigest()


def convert(model: str, input: str | os.PathLike, output: str | os.PathLike,
            aux_heads: bool = False) -> str:
  """Read weights for `model` from `input` (any supported format), validate them and write
  them as a cv_jax orbax checkpoint directory `output`. Returns a one-line summary.

  Raises WeightsError (nothing is written) when the input cannot be read, does not fit the
  model, or `output` already exists.
  """
  if model not in SPECS:
    raise WeightsError(f"unknown model {model!r}; available: {', '.join(SPECS)}")
  spec = SPECS[model]
  src = pathlib.Path(input).expanduser()
  out = pathlib.Path(output).expanduser().absolute()
  if out.exists():
    raise WeightsError(f"{out} already exists; remove it or choose another output path")
  params = read_params(src, spec, aux_heads)
  digest = file_sha256(src)
  out.parent.mkdir(parents=True, exist_ok=True)
  save_checkpoint(out, params, spec, aux_heads, source=f"{src.absolute()} sha256={digest}")
  n_tensors = sum(len(d) for d in params.values())
  n_params = sum(int(a.size) for d in params.values() for a in d.values())
  return (f"converted {model}: {n_params:,} parameters in {n_tensors} tensors from {src} "
          f"(sha256 {digest}) -> {out}")
