"""An in-memory `experiment.json` document in the paper's shape, for analysis and simulator tests.

The analysis needs no images, only the document: units (9 blocks x the 3x3 and pool branches),
main trials per image set with activations and the four baselines' choices, catch trials,
practice trials and the tasks (`cv_jax.experiment.trials.make_tasks`, so the task structure is
the real one). Activations and baseline choices are drawn from a seeded NumPy generator; image
paths are names only (no files). Imports no JAX.
"""

from __future__ import annotations

import numpy as np

from cv_jax.experiment import schema
from cv_jax.experiment import trials as trials_lib

BLOCKS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
          "mixed5a", "mixed5b")


def make_doc(*, n_tasks: int = 10, n_sets: int = 5, seed: int = 0, n_practice: int = 4,
             baseline_accuracy: dict[str, float] | None = None,
             conditions=schema.CONDITIONS) -> dict:
  """A schema-valid experiment document (validated without a root: no files are referenced).

  Args:
    n_tasks: tasks per condition (task k uses image set (k-1) mod n_sets).
    n_sets: image sets of the 18 main units.
    seed: the generator seed of activations and baseline outcomes.
    n_practice: practice trials (shown first in every task).
    baseline_accuracy: probability that each baseline is correct on a trial.
  """
  rng = np.random.default_rng([seed, 99])
  acc = {"center": 0.5, "center_published": 0.5, "variance": 0.6, "saliency": 0.65}
  acc.update(baseline_accuracy or {})
  units, trials = [], []

  def add_unit(block, branch, ch, role, sets):
    uid = trials_lib.unit_id(f"{block}/{branch}:{ch}")
    # as the pipeline writes them: `unit` = layer:concat index, `branch` = block/branch:index
    units.append({"id": uid, "unit": f"{block}_pre_relu:{ch}", "branch": f"{block}/{branch}:{ch}",
                  "layer": f"{block}_pre_relu", "channel": ch, "role": role})
    for b in sets:
      base = float(rng.uniform(2, 8))
      mx = base * float(rng.uniform(0.7, 1.0))
      mn = mx - base * float(rng.uniform(0.02, 0.6))
      d = f"stimuli/{uid}/set{b:02d}"
      bl = {}
      for name, p in acc.items():
        ok = bool(rng.random() < p)
        lo, hi = sorted(rng.uniform(0, 1, 2))
        # the scoring rules of baselines.score: center dist(max) > dist(min), the others <
        big = name.startswith("center")
        vmax, vmin = (hi, lo) if ok == big else (lo, hi)
        bl[name] = {"min": float(vmin), "max": float(vmax), "correct": ok,
                    "choice": "max" if ok else "min"}
      trials.append({
          "id": trials_lib.trial_id(uid, b), "unit": uid, "image_set": b, "role": role,
          "images": {k: f"{d}/query_{k}.png" for k in ("base", "max", "min")},
          "correct": "max", "occlusion": {"max": [0, 0], "min": [90, 90], "size": 90},
          "activations": {"base": base, "min": mn, "max": mx},
          "references": {c: [f"{d}/{c}_{i}.png" for i in range(schema.N_REFERENCES[c])]
                         for c in conditions},
          "baselines": bl})

  for i, block in enumerate(BLOCKS):
    for branch in ("3x3", "pool"):
      add_unit(block, branch, 10 + i, "main", range(n_sets))
  for block, branch, ch, b in (("mixed4e", "pool", 300, 0), ("mixed4c", "pool", 301, 1 % n_sets),
                               ("mixed5a", "3x3", 302, 0)):
    add_unit(block, branch, ch, "catch", [b])
  for j in range(n_practice):
    add_unit(BLOCKS[j % 9], "pool", 400 + j, "practice", [j % n_sets])
  trials_lib.assign_catch_swaps(trials, mode="paper", seed=seed)
  practice = [t["id"] for t in trials if t["role"] == "practice"]
  tasks = trials_lib.make_tasks(trials, conditions, n_tasks=n_tasks, n_sets=n_sets,
                                practice=practice)
  doc = {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
         "generator": {"package": "cv_jax.testing.human_doc", "version": "1"},
         "model": {"name": "synthetic"},
         "occlusion": {"size": 90, "stride": 2, "fill": "mean", "image_size": 224},
         "conditions": {c: {"n_references": schema.N_REFERENCES[c]} for c in conditions},
         "units": units, "trials": trials, "tasks": tasks}
  schema.validate(doc)
  return doc
