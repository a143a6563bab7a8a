"""Checks shared by both kinds of experiment document, the occlusion task (`schema.validate`) and
the 2-AFC exemplar task (`schema_2afc.validate_2afc`): the JSON-Schema check, unique unit and
trial ids, the tasks' structure and the referenced files. Each raises `error` (an exception
class) with a message naming the first problem."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def check_json_schema(doc: Mapping[str, Any], schema: Mapping[str, Any], error: type) -> None:
  """Validate `doc` against the JSON-Schema `schema` when `jsonschema` is importable."""
  try:
    import jsonschema
  except ImportError:  # pragma: no cover - the semantic checks still run
    return
  try:
    jsonschema.validate(doc, schema)
  except jsonschema.ValidationError as e:
    where = "/".join(str(p) for p in e.absolute_path)
    raise error(f"experiment.json at /{where}: {e.message}") from None


def unique_ids(doc: Mapping[str, Any], error: type) -> tuple[dict, dict]:
  """({unit id: unit}, {trial id: trial}); `error` if two units or two trials share an id."""
  units = {u["id"]: u for u in doc["units"]}
  if len(units) != len(doc["units"]):
    raise error("duplicate unit ids")
  trials = {t["id"]: t for t in doc["trials"]}
  if len(trials) != len(doc["trials"]):
    raise error("duplicate trial ids")
  return units, trials


def check_tasks(doc: Mapping[str, Any], trials: Mapping[str, Any], error: type,
                check_entry: Callable[[Mapping[str, Any], Mapping[str, Any], str, int], None]
                ) -> None:
  """Unique task ids, declared conditions, entries (practice + trials) naming known trials and
  `catch_trial_idxs` (when present) matching the catch entries; `check_entry(task, entry,
  condition, n_references)` checks what else an entry of this kind of task must satisfy."""
  conds = doc["conditions"]
  ids = set()
  for task in doc["tasks"]:
    if task["id"] in ids:
      raise error(f"duplicate task id {task['id']}")
    ids.add(task["id"])
    c = task["condition"]
    if c not in conds:
      raise error(f"task {task['id']} uses condition {c!r}, not declared in conditions")
    n = conds[c]["n_references"]
    for entry in list(task.get("practice", [])) + list(task["trials"]):
      if entry["trial"] not in trials:
        raise error(f"task {task['id']} refers to unknown trial {entry['trial']!r}")
      check_entry(task, entry, c, n)
    idxs = [i + 1 for i, e in enumerate(task["trials"]) if e["mode"] == "catch_trial"]
    if "catch_trial_idxs" in task and task["catch_trial_idxs"] != idxs:
      raise error(f"task {task['id']}: catch_trial_idxs {task['catch_trial_idxs']} do not "
                  f"match the catch trials at {idxs}")


def check_files(root: str | os.PathLike | None, files: Iterable[str], error: type) -> None:
  """With `root`, `error` unless every path of `files` is a file under it."""
  if root is None:
    return
  root = pathlib.Path(root)
  missing = [f for f in dict.fromkeys(files) if not (root / f).is_file()]
  if missing:
    raise error(f"{len(missing)} referenced files are missing under {root}, e.g. "
                f"{missing[:3]}")
