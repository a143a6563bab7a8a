"""A synthetic 2-AFC exemplar `experiment.json` folder for the human-study tests.

Like `human_experiment.make` for the occlusion task: the study server and the analysis need only
the document and the PNGs. `make_2afc(root)` writes a schema-valid document (task
"exemplar_2afc") with `n_main` main units at `n_sets` image sets, `n_catch` catch trials and the
conditions natural and synthetic, with tasks from `exemplar_2afc.make_tasks_2afc`. Imports no JAX.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

from cv_jax.experiment import exemplar_2afc as x2
from cv_jax.experiment import schema
from cv_jax.experiment import trials as trials_lib
from cv_jax.testing.human_experiment import _png


def make_2afc(root: str | os.PathLike, *, n_main: int = 6, n_catch: int = 2, n_tasks: int = 2,
              n_sets: int = 2, conditions: Sequence[str] = ("natural", "synthetic"),
              n_references: int = 9) -> pathlib.Path:
  """Write `root/experiment.json` and its stimuli; return the path of the document."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  units, trials = [], []
  roles = ["main"] * n_main + ["catch"] * n_catch
  for u, role in enumerate(roles):
    uid = f"mixed{3 + u % 2}a-unit-{u}"
    layer = f"mixed{3 + u % 2}a_pre_relu"
    units.append({"id": uid, "unit": f"{layer}:{u}", "branch": None, "layer": layer,
                  "channel": u, "role": role})
    for b in (range(n_sets) if role == "main" else [n_sets]):
      d = f"stimuli/{uid}/set{b:02d}"
      refs = {c: {side: [f"{d}/{c}_{side}_{k}.png" for k in range(n_references)]
                  for side in x2.SIDES} for c in conditions}
      queries = {side: f"{d}/query_{side}.png" for side in x2.SIDES}
      if role == "catch":
        queries = {side: refs[conditions[0]][side][0] for side in x2.SIDES}
        refs = {c: refs[conditions[0]] for c in conditions}
      for rel in {*queries.values(), *(p for c in refs.values() for v in c.values() for p in v)}:
        _png(root / rel, rel)
      info = {side: {"image_id": 10 * u + b, "rank": 5 + b, "activation": 1.0 if side == "max"
                     else -1.0} for side in x2.SIDES}
      trials.append({"id": trials_lib.trial_id(uid, b), "kind": "exemplar_2afc", "unit": uid,
                     "image_set": b, "role": role, "queries": queries, "correct": "max",
                     "query_info": info, "references": refs})
  tasks = x2.make_tasks_2afc(trials, list(conditions), n_tasks=n_tasks, sets=list(range(n_sets)),
                             seed=1, n_references=n_references)
  doc = {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
         "task": "exemplar_2afc", "generator": {"package": "cv_jax", "version": "test"},
         "model": {"name": "synthetic"},
         "selection": {"n_references": n_references, "bin_size": 20, "query_percentile": 0.1,
                       "n_images": 1000, "query_window": [101, 120]},
         "reference_sides": {"min": "left", "max": "right"},
         "conditions": {c: {"n_references": n_references} for c in conditions},
         "units": units, "trials": trials, "tasks": tasks}
  schema.validate(doc, root)
  path = root / "experiment.json"
  path.write_text(json.dumps(doc, indent=1) + "\n")
  return path
