"""The versioned JSON format of an experiment (`experiment.json`) and its JSON-Schema document.

One file describes everything a causal-understanding study needs: the units, every trial (query
images, occluder positions, activations, the reference images of each condition, the baselines'
values) and the tasks (what each participant sees, in which order, with which reference slots
and on which side the correct image is). Image paths are relative to the folder holding
`experiment.json`. The human-readable description is docs/experiment_schema.md; `SCHEMA` below is
the machine-readable one, written next to each experiment as `experiment.schema.json`.

Versioning: `schema_version` is semantic. Consumers must reject a different major version;
minor versions only add optional fields.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

from cv_jax.experiment import schema_checks as checks

SCHEMA_NAME = "cv_jax.experiment"
SCHEMA_VERSION = "1.1.0"
"""1.1.0 added two optional fields: `instructions` (example entries of the instruction pages) and
the top-level `task` ("occlusion", the default, or "exemplar_2afc", whose trials follow
`schema_2afc`)."""
TASKS = ("occlusion", "exemplar_2afc")
CONDITIONS = ("synthetic", "natural", "mixed", "blur", "none")
"""The paper's reference conditions (Synthetic = "optimized" in the paper's code)."""
N_REFERENCES = {"synthetic": 9, "natural": 9, "mixed": 9, "blur": 9, "none": 0}
ROLES = ("main", "catch", "practice")

_pos = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}
_num = {"type": "number"}
_path = {"type": "string", "minLength": 1}
_minmax = {"type": "object", "required": ["min", "max"],
           "properties": {"min": _num, "max": _num}}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://cv-jax.invalid/schemas/experiment/{SCHEMA_VERSION}",
    "title": "cv_jax causal-understanding experiment",
    "description": "Trials and tasks of an occlusion-based causal-understanding study "
                   "(Zimmermann, Borowski et al., NeurIPS 2021). See docs/experiment_schema.md.",
    "type": "object",
    "required": ["schema", "schema_version", "generator", "model", "occlusion", "conditions",
                 "units", "trials", "tasks"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"type": "string", "pattern": r"^1\.\d+\.\d+$"},
        "task": {"const": "occlusion"},
        "generator": {"type": "object", "required": ["package", "version"]},
        "config": {"type": "object"},
        "model": {"type": "object", "required": ["name"],
                  "properties": {"name": {"type": "string"}, "weights": {"type": ["string", "null"]}}},
        "occlusion": {
            "type": "object", "required": ["size", "stride", "fill", "image_size"],
            "properties": {"size": {"type": "integer", "minimum": 1},
                           "stride": {"type": "integer", "minimum": 1},
                           "fill": {"type": "string"},
                           "image_size": {"type": "integer", "minimum": 1}}},
        "conditions": {
            "type": "object",
            "propertyNames": {"enum": list(CONDITIONS)},
            "additionalProperties": {
                "type": "object", "required": ["n_references"],
                "properties": {"n_references": {"type": "integer", "minimum": 0},
                               "n_synthetic": {"type": "integer", "minimum": 0},
                               "n_natural": {"type": "integer", "minimum": 0}}}},
        "units": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "unit", "layer", "channel", "role"],
                "properties": {
                    "id": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
                    "unit": {"type": "string"}, "branch": {"type": ["string", "null"]},
                    "layer": {"type": "string"}, "channel": {"type": "integer", "minimum": 0},
                    "role": {"enum": list(ROLES)},
                    "synthetic": {"type": "object",
                                  "additionalProperties": {"type": "array", "items": _path}},
                    "synthetic_activations": {"type": "object", "additionalProperties": {
                        "type": "array", "items": _num}}}}},
        "trials": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "unit", "image_set", "role", "images", "correct", "occlusion",
                             "activations", "references"],
                "properties": {
                    "id": {"type": "string"},
                    "unit": {"type": "string"},
                    "image_set": {"type": "integer", "minimum": 0},
                    "role": {"enum": list(ROLES)},
                    "query": {"type": "object", "properties": {
                        "image_id": {"type": "integer"}, "path": {"type": "string"},
                        "rank": {"type": "integer", "minimum": 1}}},
                    "images": {"type": "object", "required": ["base", "max", "min"],
                               "properties": {"base": _path, "max": _path, "min": _path}},
                    "correct": {"const": "max"},
                    "occlusion": {"type": "object", "required": ["max", "min", "size"],
                                  "properties": {"max": _pos, "min": _pos,
                                                 "size": {"type": "integer"},
                                                 "map": {"type": ["string", "null"]}}},
                    "activations": {"type": "object", "required": ["base", "min", "max"],
                                    "properties": {"base": _num, "min": _num, "max": _num}},
                    "activations_png": {"type": "object", "properties": {
                        "base": _num, "min": _num, "max": _num}},
                    "references": {
                        "type": "object",
                        "propertyNames": {"enum": list(CONDITIONS)},
                        "additionalProperties": {"type": "array", "items": _path}},
                    "natural_references": {"type": "array", "items": {
                        "type": "object", "required": ["image_id", "rank"]}},
                    "blur": {"type": "array", "items": {
                        "type": "object", "required": ["window", "activation"],
                        "properties": {"window": _pos, "activation": _num}}},
                    "baselines": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["min", "max", "correct"],
                        "properties": {"min": _num, "max": _num, "correct": {"type": "boolean"},
                                       "choice": {"enum": ["max", "min", None]}}}},
                    "catch": {"type": "object", "required": ["conditions", "min"],
                              "properties": {"conditions": {"type": "array", "items": {
                                  "enum": list(CONDITIONS)}},
                                  "min": _path, "min_source": {"type": "string"},
                                  "min_activation": _num}},
                }}},
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "condition", "index", "image_set", "trials"],
                "properties": {
                    "id": {"type": "string"},
                    "condition": {"enum": list(CONDITIONS)},
                    "index": {"type": "integer", "minimum": 1},
                    "image_set": {"type": "integer", "minimum": 0},
                    "seed": {"type": "integer"},
                    "practice": {"type": "array", "items": {"$ref": "#/$defs/task_trial"}},
                    "trials": {"type": "array", "minItems": 1,
                               "items": {"$ref": "#/$defs/task_trial"}},
                    "catch_trial_idxs": {"type": "array", "items": {"type": "integer",
                                                                   "minimum": 1}}}}},
        "instructions": {
            "type": "object",
            "description": "since 1.1.0: the example trials of each condition's instruction "
                           "pages (entries like a task's, not shown as trials)",
            "properties": {"examples": {
                "type": "object", "propertyNames": {"enum": list(CONDITIONS)},
                "additionalProperties": {"type": "array",
                                         "items": {"$ref": "#/$defs/task_trial"}}}}},
        "results": {"type": "object"},
    },
    "$defs": {
        "task_trial": {
            "type": "object", "required": ["trial", "mode", "reference_order", "max_side"],
            "properties": {
                "trial": {"type": "string"},
                "mode": {"enum": ["normal", "catch_trial", "practice"]},
                "reference_order": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "max_side": {"enum": ["left", "right"]}}},
    },
}


class SchemaError(ValueError):
  """An experiment document does not follow the schema (message names the problem)."""


def write_schema(path: str | os.PathLike, task: str = "occlusion") -> pathlib.Path:
  """Write the JSON-Schema document of `task` to `path`."""
  from cv_jax.experiment import schema_2afc
  path = pathlib.Path(path)
  doc = SCHEMA if task == "occlusion" else schema_2afc.schema(SCHEMA_VERSION)
  path.write_text(json.dumps(doc, indent=1) + "\n")
  return path


def validate(doc: Mapping[str, Any], root: str | os.PathLike | None = None) -> None:
  """Check an experiment document; raise SchemaError naming the first problem.

  Runs the JSON-Schema check when the `jsonschema` package is importable, then the semantic
  checks JSON-Schema cannot express: major version, unique ids, trials referring to known
  units, each condition's reference count, reference orders being permutations of the
  condition's references (mixed: synthetic slots first), tasks referring to known trials, and,
  with `root`, that every referenced file exists.
  """
  task = doc.get("task", "occlusion") if isinstance(doc, Mapping) else "occlusion"
  if task not in TASKS:
    raise SchemaError(f"unknown task {task!r}; choose one of {TASKS}")
  if task == "exemplar_2afc":
    from cv_jax.experiment import schema_2afc
    for key in ("schema", "schema_version"):
      if key not in doc:
        raise SchemaError(f"experiment.json lacks the field {key!r}")
    if doc["schema"] != SCHEMA_NAME:
      raise SchemaError(f"not a {SCHEMA_NAME} document (schema = {doc['schema']!r})")
    if str(doc["schema_version"]).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
      raise SchemaError(f"schema_version {doc['schema_version']} is not compatible with "
                        f"{SCHEMA_VERSION}")
    schema_2afc.validate_2afc(doc, root, error=SchemaError)
    return
  checks.check_json_schema(doc, SCHEMA, SchemaError)
  for key in SCHEMA["required"]:
    if key not in doc:
      raise SchemaError(f"experiment.json lacks the field {key!r}")
  if doc["schema"] != SCHEMA_NAME:
    raise SchemaError(f"not a {SCHEMA_NAME} document (schema = {doc['schema']!r})")
  major = str(doc["schema_version"]).split(".")[0]
  if major != SCHEMA_VERSION.split(".")[0]:
    raise SchemaError(f"schema_version {doc['schema_version']} is not compatible with "
                      f"{SCHEMA_VERSION}")
  units, trials = checks.unique_ids(doc, SchemaError)
  conds = doc["conditions"]
  files: list[str] = []
  for t in doc["trials"]:
    if t["unit"] not in units:
      raise SchemaError(f"trial {t['id']} refers to unknown unit {t['unit']!r}")
    for c, refs in t["references"].items():
      want = conds.get(c, {}).get("n_references")
      if want is not None and len(refs) != want:
        raise SchemaError(f"trial {t['id']}: condition {c} has {len(refs)} references, "
                          f"expected {want}")
      files += refs
    files += list(t["images"].values())
    if t.get("catch"):
      files.append(t["catch"]["min"])
  for u in doc["units"]:
    for paths in u.get("synthetic", {}).values():
      files += paths

  def check_entry(task, entry, c, n):
    order = entry["reference_order"]
    if sorted(order) != list(range(n)):
      raise SchemaError(f"task {task['id']}, trial {entry['trial']}: reference_order {order} "
                        f"is not a permutation of 0..{n - 1}")
    if c == "mixed":
      ns = conds[c].get("n_synthetic", 4)
      if sorted(order[:ns]) != list(range(ns)):
        raise SchemaError(f"task {task['id']}: mixed references must show the {ns} synthetic "
                          f"images first")
  checks.check_tasks(doc, trials, SchemaError, check_entry)
  for c, entries in doc.get("instructions", {}).get("examples", {}).items():
    if c not in conds:
      raise SchemaError(f"instructions.examples uses condition {c!r}, not declared in conditions")
    for entry in entries:
      if entry["trial"] not in trials:
        raise SchemaError(f"instructions.examples[{c}] refers to unknown trial "
                          f"{entry['trial']!r}")
      if sorted(entry["reference_order"]) != list(range(conds[c]["n_references"])):
        raise SchemaError(f"instructions.examples[{c}], trial {entry['trial']}: reference_order "
                          f"{entry['reference_order']} is not a permutation of the references")
  checks.check_files(root, files, SchemaError)
