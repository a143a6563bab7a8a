"""Weight converters: torch-, caffe- and TensorFlow-free readers of the published weight files.

- `caffe.read_caffemodel(path)`: Caffe `.caffemodel` (V1 `layers` and V2 `layer` encodings).
- `torch_pickle.load_state_dict(path)`: PyTorch `.pth`/`.pt` (zip and legacy formats).
- `tf_graph.read_constants(path)`: frozen TensorFlow GraphDef `.pb` constants.
- `convert(model, input, output)`: any supported file -> the project's orbax checkpoint
  (also `python -m cv_jax.convert --model=... --input=... --output=...`).

`cv_jax.models.load(name, weights=path)` reads all of these directly; converting once to a
checkpoint only saves the parsing time and records where the weights came from.
"""

from __future__ import annotations

import hashlib
import os
import pathlib


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
  from cv_jax.models import spec as S, weights as W
  if model not in S.SPECS:
    raise W.WeightsError(f"unknown model {model!r}; available: {', '.join(S.SPECS)}")
  spec = S.SPECS[model]
  src = pathlib.Path(input).expanduser()
  out = pathlib.Path(output).expanduser().absolute()
  if out.exists():
    raise W.WeightsError(f"{out} already exists; remove it or choose another output path")
  params = W.read_params(src, spec, aux_heads)
  digest = file_sha256(src)
  out.parent.mkdir(parents=True, exist_ok=True)
  W.save_checkpoint(out, params, spec, aux_heads, source=f"{src.absolute()} sha256={digest}")
  n_tensors = sum(len(d) for d in params.values())
  n_params = sum(int(a.size) for d in params.values() for a in d.values())
  return (f"converted {model}: {n_params:,} parameters in {n_tensors} tensors from {src} "
          f"(sha256 {digest}) -> {out}")
