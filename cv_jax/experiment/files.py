"""The experiment folder's JSON files: plain-Python conversion, fingerprints, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np


def to_plain(x):
  """ConfigDict / tuples / numpy scalars -> JSON-able plain Python."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, dict):
    return {str(k): to_plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_plain(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_plain(x.tolist())
  if isinstance(x, np.generic):
    return to_plain(x.item())
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def fingerprint(obj) -> str:
  """16 hex digits of the sha1 of `obj`'s plain JSON (sorted keys): a stage's settings id."""
  return hashlib.sha1(json.dumps(to_plain(obj), sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: pathlib.Path, obj) -> None:
  """Write `obj` as JSON atomically (temp file + rename), creating the folder."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(to_plain(obj), indent=1) + "\n")
  os.replace(tmp, path)


def read_json(path: pathlib.Path):
  """The JSON document at `path`."""
  return json.loads(path.read_text())
