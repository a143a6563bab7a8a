"""An experiment folder as the study server sees it: tasks, images by content hash, descriptors.

Secrecy (human_experiment_spec §3.4): a participant's page only ever receives *descriptors* —
image URLs of the form `/s/<token>/img/<sha256 of the PNG bytes>.png` for the left, right, base
and reference images — never paths, the correct side, the entry's mode, unit ids or
activations. `cv_jax.experiment.trials.shown_images` decides what is shown, exactly as for any
other consumer of `experiment.json`. Imports no JAX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from cv_jax.experiment import exemplar_2afc as x2
from cv_jax.experiment import schema
from cv_jax.experiment import trials as trials_lib
from cv_jax.human.settings import Settings


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A loaded experiment folder (read-only data).

  Attributes:
    root: the folder holding `experiment.json`.
    doc: the parsed document.
    sha256: sha256 of the `experiment.json` bytes (the study records it at `init`).
    tasks: task id -> task dict.
    trials: trial id -> trial dict.
    path_hash: image path (relative to root) -> sha256 of its bytes.
    hash_file: sha256 -> absolute image path.
  """
  root: pathlib.Path
  doc: dict
  sha256: str
  tasks: dict
  trials: dict
  path_hash: dict
  hash_file: dict


class ExperimentError(ValueError):
  """The experiment folder cannot be served (message says why and what to do)."""


def file_sha256(path: str | os.PathLike) -> str:
  """sha256 hex digest of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def load(experiment_dir: str | os.PathLike) -> Experiment:
  """Read and validate `experiment_dir/experiment.json`, hashing every image it refers to."""
  root = pathlib.Path(experiment_dir).resolve()
  path = root / "experiment.json"
  if not path.is_file():
    raise ExperimentError(f"no experiment.json in {root}; pass the folder `cv-jax experiment` "
                          "wrote (its --workdir)")
  raw = path.read_bytes()
  try:
    doc = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ExperimentError(f"{path} is not JSON ({e})") from None
  try:
    schema.validate(doc, root)
  except schema.SchemaError as e:
    raise ExperimentError(str(e)) from None
  if not doc["tasks"]:
    raise ExperimentError(f"{path} has no tasks; the experiment config must make tasks")
  paths: set[str] = set()
  for t in doc["trials"]:
    if is_2afc(doc):
      paths.update(t["queries"].values())
      for sides in t["references"].values():
        paths.update(sides["max"] + sides["min"])
      continue
    paths.update(t["images"].values())
    for refs in t["references"].values():
      paths.update(refs)
    if t.get("catch"):
      paths.add(t["catch"]["min"])
  path_hash = {p: file_sha256(root / p) for p in sorted(paths)}
  hash_file = {h: root / p for p, h in path_hash.items()}
  return Experiment(root=root, doc=doc, sha256=hashlib.sha256(raw).hexdigest(),
                    tasks={t["id"]: t for t in doc["tasks"]},
                    trials={t["id"]: t for t in doc["trials"]},
                    path_hash=path_hash, hash_file=hash_file)


def is_2afc(doc: Mapping[str, Any]) -> bool:
  """Whether the document is a 2-AFC exemplar experiment (`task` "exemplar_2afc")."""
  return doc.get("task") == "exemplar_2afc"


def view(exp: Experiment, task: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
  """Server-side view of one entry: image hashes plus the secret fields (never sent).

  Returns {"left", "right", "base", "references" (hashes, display order), "max_side", "mode",
  "trial_id"}; for a 2-AFC exemplar experiment instead of "base" and "references":
  "kind" = "exemplar_2afc", "min_references" and "max_references" (display order).
  """
  h = exp.path_hash
  if is_2afc(exp.doc):
    shown = x2.shown_2afc(exp.doc, task, entry)
    return {"kind": "exemplar_2afc", "left": h[shown["left"]], "right": h[shown["right"]],
            "min_references": [h[p] for p in shown["min_references"]],
            "max_references": [h[p] for p in shown["max_references"]],
            "max_side": shown["correct"], "mode": entry["mode"], "trial_id": entry["trial"]}
  shown = trials_lib.shown_images(exp.doc, task, entry)
  return {"left": h[shown["left"]], "right": h[shown["right"]], "base": h[shown["base"]],
          "references": [h[p] for p in shown["references"]], "max_side": shown["correct"],
          "mode": entry["mode"], "trial_id": entry["trial"]}


def image_url(token: str, digest: str) -> str:
  """The per-session URL of an image."""
  return f"/s/{token}/img/{digest}.png"


def view_hashes(v: Mapping[str, Any]) -> list[str]:
  """Every image hash a view shows."""
  if v.get("kind") == "exemplar_2afc":
    return [v["left"], v["right"], *v["min_references"], *v["max_references"]]
  return [v["base"], v["left"], v["right"], *v["references"]]


def descriptor(v: Mapping[str, Any], token: str, phase: str, attempt: int,
               index: int) -> dict[str, Any]:
  """The public descriptor of a view: URLs and the entry key only (no secret fields)."""
  if v.get("kind") == "exemplar_2afc":
    return {"phase": phase, "attempt": attempt, "entry_index": index, "kind": "exemplar_2afc",
            "left": image_url(token, v["left"]), "right": image_url(token, v["right"]),
            "min_references": [image_url(token, r) for r in v["min_references"]],
            "max_references": [image_url(token, r) for r in v["max_references"]]}
  return {"phase": phase, "attempt": attempt, "entry_index": index,
          "base": image_url(token, v["base"]), "left": image_url(token, v["left"]),
          "right": image_url(token, v["right"]),
          "references": [image_url(token, r) for r in v["references"]]}


def practice_draw(task: Mapping[str, Any], attempt: int, settings: Settings) -> list[int]:
  """Indices into `task["practice"]` of practice block `attempt` (1-based), seeded.

  Paper (TJ l.337-386): each block is one of the first `practice_obvious` ("obvious") trials
  followed by `practice_block - 1` of the others, in a random order within each group. With too
  few practice trials for that, the block is every practice trial in a random order. The draw
  uses `np.random.default_rng([task seed, 5, task index, attempt])`.
  """
  n = len(task.get("practice", []))
  rng = np.random.default_rng([int(task.get("seed", 1)), 5, int(task["index"]), int(attempt)])
  k_obv = min(settings.practice_obvious, n)
  if n < settings.practice_block or n - k_obv < settings.practice_block - 1 or k_obv == 0:
    return [int(i) for i in rng.permutation(n)]
  first = int(rng.integers(k_obv))
  rest = [int(k_obv + i) for i in rng.permutation(n - k_obv)[:settings.practice_block - 1]]
  return [first] + rest


def has_practice(task: Mapping[str, Any], settings: Settings) -> bool:
  """Whether this task's participant does practice blocks."""
  return bool(task.get("practice")) and task["condition"] in settings.practice_conditions


def instruction_examples(exp: Experiment, task: Mapping[str, Any]) -> list[dict[str, Any]]:
  """Example entries for the instruction pages, in the task's own condition.

  From `doc["instructions"]["examples"][condition]` (schema 1.1) when present; otherwise the
  task's first practice entry; otherwise none (text-only instructions).
  """
  ex = exp.doc.get("instructions", {}).get("examples", {}).get(task["condition"])
  if ex:
    return list(ex)
  return list(task.get("practice", []))[:1]


def task_hashes(exp: Experiment, task: Mapping[str, Any]) -> set[str]:
  """Every image hash this task can show (examples, practice, trials)."""
  out: set[str] = set()
  for e in instruction_examples(exp, task) + list(task.get("practice", [])) + list(task["trials"]):
    out.update(view_hashes(view(exp, task, e)))
  return out
