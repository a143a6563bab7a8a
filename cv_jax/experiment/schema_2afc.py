"""The JSON format of a 2-AFC exemplar experiment (`experiment.json` with task "exemplar_2afc").

Same document family as the occlusion experiment (`schema` "cv_jax.experiment", semantic
`schema_version`, paths relative to the folder holding the file), with `task` =
"exemplar_2afc" and 2-AFC trials: two natural queries (`queries.max`, `queries.min`; the correct
answer is always "max") and, per reference condition ("natural", "synthetic"), 9 references of
each side (`references[condition].max` / `.min`, column 0 = the most extreme). Tasks hold, per
entry, a display order for each side's references and the side of the max query. See
docs/experiment_schema.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from cv_jax.experiment import schema_checks as checks

CONDITIONS_2AFC = ("natural", "synthetic")
TASK = "exemplar_2afc"

_path = {"type": "string", "minLength": 1}
_num = {"type": ["number", "null"]}
_sides = {"type": "object", "required": ["max", "min"],
          "properties": {"max": {"type": "array", "items": _path},
                         "min": {"type": "array", "items": _path}}}
_query = {"type": "object", "required": ["image_id", "rank"],
          "properties": {"image_id": {"type": "integer", "minimum": 0},
                         "rank": {"type": "integer", "minimum": 1},
                         "activation": _num, "path": {"type": "string"}}}
_order = {"type": "array", "items": {"type": "integer", "minimum": 0}}


def schema(version: str) -> dict[str, Any]:
  """The JSON-Schema of a 2-AFC document of `version`."""
  return {
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "$id": f"https://cv-jax.invalid/schemas/experiment-2afc/{version}",
      "title": "cv_jax 2-AFC exemplar experiment",
      "description": "Trials and tasks of a 2-AFC natural-exemplar study (Borowski et al. 2021, "
                     "Zimmermann et al. 2023). See docs/experiment_schema.md.",
      "type": "object",
      "required": ["schema", "schema_version", "task", "generator", "model", "selection",
                   "conditions", "units", "trials", "tasks"],
      "properties": {
          "schema": {"const": "cv_jax.experiment"},
          "schema_version": {"type": "string", "pattern": r"^1\.\d+\.\d+$"},
          "task": {"const": TASK},
          "generator": {"type": "object", "required": ["package", "version"]},
          "model": {"type": "object", "required": ["name"]},
          "selection": {"type": "object",
                        "required": ["n_references", "bin_size", "query_percentile", "n_images"],
                        "properties": {"n_references": {"type": "integer", "minimum": 1},
                                       "bin_size": {"type": "integer", "minimum": 1},
                                       "query_percentile": _num,
                                       "n_images": {"type": "integer", "minimum": 1}}},
          "reference_sides": {"type": "object", "properties": {
              "min": {"enum": ["left", "right"]}, "max": {"enum": ["left", "right"]}}},
          "conditions": {"type": "object", "propertyNames": {"enum": list(CONDITIONS_2AFC)},
                         "additionalProperties": {
                             "type": "object", "required": ["n_references"],
                             "properties": {"n_references": {"type": "integer", "minimum": 1}}}},
          "units": {"type": "array", "minItems": 1, "items": {
              "type": "object", "required": ["id", "unit", "layer", "channel", "role"]}},
          "trials": {"type": "array", "minItems": 1, "items": {
              "type": "object",
              "required": ["id", "kind", "unit", "image_set", "role", "queries", "correct",
                           "query_info", "references"],
              "properties": {
                  "id": {"type": "string"}, "kind": {"const": TASK},
                  "unit": {"type": "string"}, "image_set": {"type": "integer", "minimum": 0},
                  "role": {"enum": ["main", "catch", "practice"]},
                  "queries": {"type": "object", "required": ["max", "min"],
                              "properties": {"max": _path, "min": _path}},
                  "correct": {"const": "max"},
                  "query_info": {"type": "object", "required": ["max", "min"],
                                 "properties": {"max": _query, "min": _query}},
                  "references": {"type": "object",
                                 "propertyNames": {"enum": list(CONDITIONS_2AFC)},
                                 "additionalProperties": _sides},
                  "reference_info": {"type": "object"},
                  "catch": {"type": "object"}}}},
          "tasks": {"type": "array", "items": {
              "type": "object", "required": ["id", "condition", "index", "image_set", "trials"],
              "properties": {
                  "condition": {"enum": list(CONDITIONS_2AFC)},
                  "trials": {"type": "array", "minItems": 1, "items": {
                      "type": "object",
                      "required": ["trial", "mode", "reference_order", "max_side"],
                      "properties": {
                          "mode": {"enum": ["normal", "catch_trial", "practice"]},
                          "reference_order": {"type": "object", "required": ["max", "min"],
                                              "properties": {"max": _order, "min": _order}},
                          "max_side": {"enum": ["left", "right"]}}}}}}},
          "results": {"type": "object"},
      },
  }


def validate_2afc(doc: Mapping[str, Any], root=None, *, error=ValueError) -> None:
  """JSON-Schema check (when `jsonschema` is importable) plus the semantic checks: unique ids,
  trials of known units, each side's reference count per condition, display orders being
  permutations with the most extreme reference first, tasks naming known trials, and with
  `root` that every referenced file exists. Raises `error` naming the first problem."""
  checks.check_json_schema(doc, schema(str(doc.get("schema_version", "1.1.0"))), error)
  units, trials = checks.unique_ids(doc, error)
  files = []
  for t in doc["trials"]:
    if t["unit"] not in units:
      raise error(f"trial {t['id']} refers to unknown unit {t['unit']!r}")
    for c, sides in t["references"].items():
      want = doc["conditions"].get(c, {}).get("n_references")
      for side in ("max", "min"):
        if want is not None and len(sides[side]) != want:
          raise error(f"trial {t['id']}: condition {c} has {len(sides[side])} {side} "
                      f"references, expected {want}")
        files += sides[side]
    files += [t["queries"]["max"], t["queries"]["min"]]

  def check_entry(task, entry, c, n):
    if c not in trials[entry["trial"]]["references"]:
      raise error(f"task {task['id']}: trial {entry['trial']} has no {c} references")
    for side in ("max", "min"):
      order = entry["reference_order"][side]
      if sorted(order) != list(range(n)) or order[0] != 0:
        raise error(f"task {task['id']}, trial {entry['trial']}: {side} reference_order "
                    f"{order} is not a permutation of 0..{n - 1} starting with 0")
  checks.check_tasks(doc, trials, error, check_entry)
  checks.check_files(root, files, error)
