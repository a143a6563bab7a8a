"""A synthetic `experiment.json` folder in the paper's task shape, for the human-study tests.

The real pipeline (`cv-jax experiment`) needs the network and minutes of compute; the study
server needs only the document and the PNGs. `make(root)` writes a schema-valid experiment with
18 main units, 3 catch units and 4 practice trials (tasks of 21 entries, as in the paper), using
`cv_jax.experiment.trials.make_tasks` for the tasks, so the task structure is the real one. The
images are small seeded noise PNGs, distinct per file. Imports no JAX.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cv_jax.experiment import schema
from cv_jax.experiment import trials as trials_lib

_SIZE = 32


def _png(path: pathlib.Path, key: str) -> str:
  """Write a distinct noise PNG for `key` (seeded by its hash); return the relative path."""
  seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
  rgb = np.random.default_rng(seed).integers(0, 256, (_SIZE, _SIZE, 3), dtype=np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rgb).resize((_SIZE * 2, _SIZE * 2), Image.NEAREST).save(path)
  return path


def make(root: str | os.PathLike, *, n_main: int = 18, n_catch: int = 3, n_practice: int = 4,
         n_tasks: int = 2, n_sets: int = 2, examples: bool = False,
         conditions: Sequence[str] = schema.CONDITIONS) -> pathlib.Path:
  """Write `root/experiment.json` and its stimuli; return the path of the document.

  `examples`: also write `instructions.examples` (schema 1.1): the last practice trial, in
  canonical reference order, as each condition's instruction example.
  """
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  units, trials = [], []
  roles = ["main"] * n_main + ["catch"] * n_catch + ["practice"] * max(1, n_practice and 1)
  for u, role in enumerate(roles):
    uid = f"layer{u % 9}-unit-{u}"
    units.append({"id": uid, "unit": f"layer{u % 9}:{u}", "branch": None,
                  "layer": f"layer{u % 9}", "channel": u, "role": role})
    sets = range(n_sets) if role == "main" else ([0] if role == "catch" else range(n_practice))
    for b in sets:
      tid = trials_lib.trial_id(uid, b)
      d = f"stimuli/{uid}/set{b:02d}"
      images = {k: f"{d}/query_{k}.png" for k in ("base", "max", "min")}
      refs = {c: [f"{d}/{c}_{i}.png" for i in range(schema.N_REFERENCES[c])]
              for c in conditions}
      for rel in list(images.values()) + [p for ps in refs.values() for p in ps]:
        _png(root / rel, rel)
      trials.append({
          "id": tid, "unit": uid, "image_set": b, "role": role, "images": images,
          "correct": "max", "occlusion": {"max": [0, 0], "min": [8, 8], "size": 8},
          "activations": {"base": 3.0, "min": 1.0, "max": 2.5}, "references": refs})
  trials_lib.assign_catch_swaps(trials, mode="swap", seed=0)
  for t in trials:
    if t.get("catch"):
      t["catch"]["conditions"] = [c for c in t["catch"]["conditions"] if c in conditions]
  practice = [t["id"] for t in trials if t["role"] == "practice"][:n_practice]
  tasks = trials_lib.make_tasks(trials, conditions, n_tasks=n_tasks, n_sets=n_sets,
                                practice=practice)
  doc = {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
         "generator": {"package": "cv_jax.testing.human_experiment", "version": "1"},
         "model": {"name": "synthetic"},
         "occlusion": {"size": 8, "stride": 8, "fill": "mean", "image_size": _SIZE * 2},
         "conditions": {c: {"n_references": schema.N_REFERENCES[c]} for c in conditions},
         "units": units, "trials": trials, "tasks": tasks}
  if examples:
    ex = [t["id"] for t in trials if t["role"] == "practice"][-1]
    doc["instructions"] = {"examples": {c: [{
        "trial": ex, "mode": "practice", "max_side": "left",
        "reference_order": list(range(schema.N_REFERENCES[c]))}] for c in conditions}}
  schema.validate(doc, root)
  path = root / "experiment.json"
  path.write_text(json.dumps(doc, indent=1))
  return path
