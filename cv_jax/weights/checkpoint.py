"""The project's own checkpoint: an orbax directory plus `cv_jax.json` metadata."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import TYPE_CHECKING, Mapping

from cv_jax.weights.errors import WeightsError
from cv_jax.weights.validation import param_shapes, validate

if TYPE_CHECKING:
  from cv_jax.models.spec import NetSpec

CHECKPOINT_VERSION = 1


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
