"""The paper's raw MTurk results as a cv_jax export (human_experiment_spec §1.4-1.6, §3.8).

Input (CU `tools/data-analysis/causal-occlusion`, `utils_data.py`):
* `<pkl_dir>/<folder>/result_task_<k>.pkl` for the condition folders `optimized` (-> synthetic),
  `natural`, `mixed`, `blur`, `none`: each a `RepeatedTaskResult(task_id, raw_responses,
  responses, approved_responses, rejected_responses)` namedtuple (or a 1-element list of one);
  each raw response is `{main_data, raw_data, task_id, passed_checks, check_results,
  worker_id}` with the jsPsych records of the session;
* `<structure_dir>/<structure>.json`, the task structure JSONs (`natural_with_baselines.json`,
  `optimized_...`, `mixed_...`, `natural_blur_...`; None uses natural's), falling back to the
  files without `_with_baselines`. Main rows join to `tasks[index == k].trials[i]` by position.

The pickles are read with a restricted unpickler: `find_class` resolves only the
RepeatedTaskResult name (to a local namedtuple, so neither boto3 nor the paper's `mturk`
module is needed) and OrderedDict; any other global - functions, classes, modules - is refused,
so no code from the file runs.

Output: an export (source `mturk`) plus `experiment.json` beside it, an analysis-only document
(no images) whose units are parsed from the query paths (`layer_L/kernel_size_K/channel_C`),
whose trials carry the structure's activations and baseline values (the paper's Center
distance is stored as `center`), and whose tasks are the structure's. Mapping (§1.6):
`max_side` = left if `switched_queries`; `chosen_side` = left if `button_pressed` < 3;
`choice` = max if the paper's "b"; `confidence` = the label shown under the button (corrected;
the paper's field is inverted on the left); demo rows -> practice, attempt = block (4 rows per
block); times from `time_elapsed` (a trial is shown when the previous record ends, as the
paper measured instruction time); `check_results` -> `exclusion_json`. Worker ids are stored
as sha256 prefixes, not in clear.
"""

from __future__ import annotations

import collections
import copyreg
import hashlib
import io
import json
import math
import os
import pathlib
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cv_jax.human import export_format
from cv_jax.human.exclusion import Rules
from cv_jax.human.export_format import CONFIDENCE_LABELS, TRIAL_TYPE

FOLDERS = {"optimized": "synthetic", "natural": "natural", "mixed": "mixed", "blur": "blur",
           "none": "none"}
"""The paper's condition folders -> cv_jax conditions."""
STRUCTURES = {"optimized": "optimized", "natural": "natural", "mixed": "mixed",
              "blur": "natural_blur", "none": "natural"}
"""Condition folder -> task structure JSON stem (MAIN c.11)."""
BLOCKS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
          "mixed5a", "mixed5b")
BRANCHES = ("1x1", "3x3", "5x5", "pool")
"""kernel_size_K folder -> branch (the paper's tasks use 1 = 3x3 and 3 = pool)."""
T0_MS = 1_622_505_600_000.0  # 2021-06-01T00:00:00Z: a nominal clock origin, sessions 1 h apart

RepeatedTaskResult = collections.namedtuple(
    "RepeatedTaskResult",
    ["task_id", "raw_responses", "responses", "approved_responses", "rejected_responses"])
"""Local stand-in for the paper's `mturk.RepeatedTaskResult`."""


class ImportPaperError(ValueError):
  """The paper's files are missing or malformed (the message names the file)."""


def _reconstruct(cls, base, state):
  """`copyreg._reconstructor` (protocols 0/1) restricted to the allowed classes."""
  if cls not in (RepeatedTaskResult, collections.OrderedDict) or base not in (tuple, dict,
                                                                              object):
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r} from {base!r}")
  return copyreg._reconstructor(cls, base, state)


_ALLOWED = {("mturk", "RepeatedTaskResult"): RepeatedTaskResult,
            ("__main__", "RepeatedTaskResult"): RepeatedTaskResult,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("copyreg", "_reconstructor"): _reconstruct,
            ("copy_reg", "_reconstructor"): _reconstruct,
            ("builtins", "tuple"): tuple, ("__builtin__", "tuple"): tuple,
            ("builtins", "dict"): dict, ("__builtin__", "dict"): dict,
            ("builtins", "object"): object, ("__builtin__", "object"): object}
"""The only globals a result pickle may name: the result namedtuple, OrderedDict, and the
harmless types protocol 0/1 pickles use to rebuild them."""


class _SafeUnpickler(pickle.Unpickler):
  """An unpickler that resolves only the names the paper's result files need."""

  def find_class(self, module: str, name: str):
    """Resolve (module, name) from `_ALLOWED`; refuse anything else."""
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: a result pickle holds only RepeatedTaskResult "
          "and plain data") from None


def safe_load(data: bytes) -> Any:
  """Unpickle a paper result file without running code from it (see `_SafeUnpickler`)."""
  return _SafeUnpickler(io.BytesIO(data)).load()


def load_results(folder: str | os.PathLike) -> list[RepeatedTaskResult]:
  """All `result_task_<k>.pkl` of one condition folder, sorted by task number."""
  out = []
  for p in sorted(pathlib.Path(folder).glob("result_task_*.pkl"),
                  key=lambda p: int(re.sub(r"\D", "", p.stem) or 0)):
    try:
      obj = safe_load(p.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
      raise ImportPaperError(f"{p}: {e}") from None
    items = obj if isinstance(obj, list) else [obj]
    for it in items:
      if not isinstance(it, RepeatedTaskResult):
        raise ImportPaperError(f"{p}: expected a RepeatedTaskResult, got {type(it).__name__}")
      out.append(it)
  return out


def _task_number(task_id: str) -> int:
  try:
    return int(str(task_id).rsplit("-", 1)[-1])
  except ValueError:
    raise ImportPaperError(f"task id {task_id!r} does not end in -<number>") from None


def parse_query_path(path: str) -> dict[str, Any]:
  """`.../layer_L/kernel_size_K/channel_C/natural_images/batch_B/...` -> its fields (UD l.134)."""
  parts = str(path).rstrip("/").split("/")
  try:
    i = next(k for k, s in enumerate(parts) if s.startswith("layer_"))
    layer = int(parts[i].split("_")[-1])
    kernel = int(parts[i + 1].split("_")[-1])
    channel = int(parts[i + 2].split("_")[-1])
    batch = int(next(s for s in parts[i:] if s.startswith("batch_")).split("_")[-1])
  except (StopIteration, ValueError, IndexError):
    raise ImportPaperError(f"cannot parse layer/kernel/channel/batch from query path "
                           f"{path!r}") from None
  return {"layer": layer, "kernel_size": kernel, "channel": channel, "batch": batch}


def _f(x) -> float | None:
  if x is None:
    return None
  try:
    v = float(x)
  except (TypeError, ValueError):
    return None
  return v if math.isfinite(v) else None


def _load_structure(structure_dir: pathlib.Path, folder: str) -> dict[int, dict]:
  stem = STRUCTURES[folder]
  for name in (f"{stem}_with_baselines.json", f"{stem}.json"):
    p = structure_dir / name
    if p.is_file():
      doc = json.loads(p.read_text())
      return {int(t["index"]): t for t in doc["tasks"]}
  raise ImportPaperError(f"no task structure for {folder}: expected {stem}_with_baselines.json "
                         f"or {stem}.json in {structure_dir}")


def _unit_and_trial(q: Mapping[str, Any], trial: Mapping[str, Any], units, trials) -> str:
  """Register the unit and trial of one structure entry; return the trial id."""
  block = BLOCKS[q["layer"]] if 0 <= q["layer"] < len(BLOCKS) else f"layer{q['layer']}"
  branch = BRANCHES[q["kernel_size"]] if 0 <= q["kernel_size"] < 4 else f"k{q['kernel_size']}"
  uid = f"{block}-{branch}-channel_{q['channel']}"
  role = "catch" if trial.get("mode") == "catch_trial" else "main"
  units.setdefault(uid, {"id": uid, "unit": f"{block}/{branch}:channel_{q['channel']}",
                         "branch": f"{block}/{branch}", "layer": f"{block}_pre_relu",
                         "channel": q["channel"], "role": role})
  tid = f"{uid}/set{q['batch']:02d}"
  if tid not in trials:
    acts = {k: _f(trial.get(f"{k}_query_activation")) for k in ("base", "min", "max")}
    bl = {}
    for name, key, bigger in (("center", "center_distance", True),
                              ("variance", "patch_std", False),
                              ("saliency", "patch_saliency", False)):
      mn, mx = _f(trial.get(f"min_query_{key}")), _f(trial.get(f"max_query_{key}"))
      if mn is None or mx is None:
        continue
      ok = mx > mn if bigger else mx < mn  # the paper's strict rules (MAIN c.37)
      choice = None if mx == mn else ("max" if ok else "min")
      bl[name] = {"min": mn, "max": mx, "correct": bool(ok), "choice": choice}
    q_path = str(trial.get("queries", ""))
    trials[tid] = {
        "id": tid, "unit": uid, "image_set": q["batch"], "role": role,
        "images": {k: f"{q_path}/query_{k}.png" for k in ("base", "max", "min")},
        "correct": "max", "occlusion": {"max": [0, 0], "min": [0, 0], "size": 0},
        "activations": acts if all(v is not None for v in acts.values()) else None,
        "references": {}, "baselines": bl}
  return tid


def _checks(check_results, condition: str) -> tuple[dict[str, Any] | None, bool | None]:
  """The paper's `check_results` in cv_jax's `{check: {passed, value, threshold}}` form."""
  if not check_results:
    return None, None
  r = Rules().for_condition(condition)

  def pair(k):
    v = check_results.get(k)
    return (None, {}) if v is None else (bool(v[0]), dict(v[1] or {}))

  out = {}
  ok, d = pair("catch_trials")
  if ok is not None:
    out["catch_trials"] = {"passed": ok, "value": _f(d.get("ratio")),
                           "threshold": r.catch_ratio_min, "applied": True,
                           "detail": {"correctly_answered": list(d.get("correctly_answered", []))}}
  ok, d = pair("instruction_time")
  if ok is not None:
    out["instruction_time"] = {"passed": ok, "value": _f(d.get("total_time")),
                               "threshold": r.instruction_time_min_s, "applied": True,
                               "detail": {}}
  ok, d = pair("total_response_time")
  if ok is not None:
    out["total_time"] = {"passed": ok, "value": _f(d.get("total_time")),
                         "threshold": [r.total_time_min_s, r.total_time_max_s], "applied": True,
                         "detail": {}}
  ok, d = pair("demo_trials")
  if ok is not None:
    out["practice_attempts"] = {"passed": ok, "value": d.get("n_demo_trials_blocks"),
                                "threshold": r.practice_attempts_max, "applied": True,
                                "detail": {}}
  ok, d = pair("row_variability")
  if ok is not None:
    nl, nr = int(d.get("n_upper_row", 0)), int(d.get("n_lower_row", 0))
    out["row_variability"] = {"passed": ok, "value": min(nl, nr), "threshold": 1,
                              "applied": True, "detail": {"n_left": nl, "n_right": nr}}
  return out, all(c["passed"] for c in out.values())


def import_paper(pkl_dir: str | os.PathLike, structure_dir: str | os.PathLike,
                 out: str | os.PathLike, *, folders: Sequence[str] | None = None
                 ) -> pathlib.Path:
  """Convert the paper's result pickles + task structures into an export folder `out`.

  Args:
    pkl_dir: folder holding the condition folders (optimized, natural, mixed, blur, none).
    structure_dir: folder holding the task structure JSONs.
    out: the export folder to write (with `experiment.json` beside the tables).
    folders: the condition folders to import (default: those present).

  Returns:
    the export folder.
  """
  pkl_dir, structure_dir, out = map(pathlib.Path, (pkl_dir, structure_dir, out))
  present = [f for f in FOLDERS if (pkl_dir / f).is_dir()] if folders is None else list(folders)
  bad = [f for f in present if f not in FOLDERS]
  if bad:
    raise ImportPaperError(f"unknown condition folder(s) {bad}; expected {list(FOLDERS)}")
  if not present:
    raise ImportPaperError(f"{pkl_dir} has none of the condition folders {list(FOLDERS)}")
  units: dict[str, dict] = {}
  trials: dict[str, dict] = {}
  tasks: list[dict] = []
  tables: dict[str, list] = {t: [] for t in export_format.TABLES}
  sid = 0
  for folder in present:
    cond = FOLDERS[folder]
    structure = _load_structure(structure_dir, folder)
    results = load_results(pkl_dir / folder)
    task_entries: dict[int, list] = {}
    for k, st in sorted(structure.items()):
      task_entries[k] = [(_unit_and_trial(parse_query_path(t["queries"]), t, units, trials),
                          t.get("mode", "normal")) for t in st["trials"]]
    sides: dict[int, list] = {}
    for res in results:
      k = _task_number(res.task_id)
      if k not in task_entries:
        raise ImportPaperError(f"task {res.task_id}: no task {k} in the {folder} structure")
      for raw in list(res.raw_responses or []):
        sid += 1
        rows = _session(raw, sid, cond, k, task_entries[k], tables, units, trials)
        sides.setdefault(k, rows)
    for k, entries in task_entries.items():
      if k not in sides:
        continue  # a structure task nobody took
      side = {r["entry_index"]: r["max_side"] for r in sides[k] if r["phase"] == "main"}
      tasks.append({"id": f"{cond}/task_{k:03d}", "condition": cond, "index": max(k, 1),
                    "image_set": trials[entries[0][0]]["image_set"] if entries else 0,
                    "trials": [{"trial": tid, "mode": mode if mode == "catch_trial" else
                                "normal", "reference_order": [],
                                "max_side": side.get(i, "right")}
                               for i, (tid, mode) in enumerate(entries)]})
  doc = {"schema": "cv_jax.experiment", "schema_version": "1.0.0",
         "generator": {"package": "cv_jax.human.import_paper", "version": "1",
                       "note": "analysis-only document built from the paper's task structures; "
                               "no images"},
         "model": {"name": "inceptionv1"},
         "occlusion": {"size": 90, "stride": 2, "fill": "mean", "image_size": 224},
         "conditions": {FOLDERS[f]: {"n_references": 0 if f == "none" else 9} for f in present},
         "units": list(units.values()), "trials": list(trials.values()), "tasks": tasks}
  out.mkdir(parents=True, exist_ok=True)
  text = json.dumps(doc, indent=1) + "\n"
  (out / "experiment.json").write_text(text)
  return export_format.write_export(
      out, tables, experiment_sha256=hashlib.sha256(text.encode()).hexdigest(), source="mturk",
      extra={"import": {"pkl_dir": pkl_dir.name, "folders": present}})


def _session(raw: Mapping[str, Any], sid: int, cond: str, k: int, entries, tables, units,
             trials) -> list[dict]:
  """One raw MTurk response -> participant, session, responses, events rows."""
  records = raw.get("raw_data") or raw.get("main_data") or []
  worker = hashlib.sha256(str(raw.get("worker_id", sid)).encode()).hexdigest()[:16]
  t0 = T0_MS + sid * 3_600_000.0
  pid = next((p["id"] for p in tables["participants"] if p["external_id"] == worker), None)
  if pid is None:
    pid = len(tables["participants"]) + 1
    tables["participants"].append({"id": pid, "study_id": 1, "external_id": worker,
                                   "source": "mturk", "ids_json": "{}", "blocked": False,
                                   "created_at": t0})
  ev = [{"session_id": sid, "page_load_id": "mturk", "seq": 0, "kind": "run_start",
         "t_client": t0, "t_server": None, "payload_json": "{}"}]
  rows: list[dict] = []
  prev = 0.0
  n_demo = n_main = 0
  first_trial = next((i for i, r in enumerate(records) if r.get("trial_type") == TRIAL_TYPE),
                     None)
  for i, rec in enumerate(records):
    te = _f(rec.get("time_elapsed")) or prev
    if rec.get("trial_type") == TRIAL_TYPE:
      demo = bool(rec.get("is_demo"))
      button = rec.get("button_pressed")
      button = None if button is None else int(button)
      rt = _f(rec.get("rt"))
      if demo:
        phase, attempt, index = "practice", n_demo // 4 + 1, n_demo % 4
        tid = f"practice/{index}"
        trials.setdefault(tid, {"id": tid, "unit": "practice", "image_set": 0,
                                "role": "practice", "images": {}, "correct": "max",
                                "occlusion": {}, "activations": None, "references": {},
                                "baselines": {}})
        units.setdefault("practice", {"id": "practice", "unit": "practice", "branch": None,
                                      "layer": "practice", "channel": 0, "role": "practice"})
        mode = "practice"
        n_demo += 1
      else:
        phase, attempt, index = "main", 0, n_main
        if index >= len(entries):
          raise ImportPaperError(f"task {k}: more main rows than the structure's "
                                 f"{len(entries)} trials")
        tid = entries[index][0]
        mode = "catch_trial" if rec.get("catch_trial") else "normal"
        n_main += 1
      shown = t0 + prev
      rows.append({
          "session_id": sid, "phase": phase, "attempt": attempt, "entry_index": index,
          "trial_id": tid, "mode": mode,
          "max_side": "left" if rec.get("switched_queries") else "right",
          "shown_left": None, "shown_right": None,
          "chosen_side": None if button is None else ("left" if button < 3 else "right"),
          "choice": "max" if rec.get("choice") == "b" else "min",
          "correct": bool(rec.get("correct")),
          "confidence": None if button is None else CONFIDENCE_LABELS[button],
          "button_index": button, "rt_ms": rt, "t_shown": shown,
          "t_choice": shown + (rt or 0.0), "t_continue": t0 + te, "page_load_id": "mturk",
          "t_server": None, "raw_json": json.dumps(
              {"confidence_as_published": rec.get("confidence"),
               "trial_index": rec.get("trial_index")}, sort_keys=True, default=str)})
    elif rec.get("trial_type") == "survey-text":
      try:
        fb = json.loads(rec.get("responses") or "{}").get("feedback", "")
      except (TypeError, ValueError):
        fb = ""
      ev.append({"session_id": sid, "page_load_id": "mturk", "seq": len(ev), "kind": "feedback",
                 "t_client": t0 + te, "t_server": None,
                 "payload_json": json.dumps({"feedback": fb})})
    elif first_trial is not None and i == first_trial - 1:
      ev.append({"session_id": sid, "page_load_id": "mturk", "seq": len(ev),
                 "kind": "instructions_end", "t_client": t0 + te, "t_server": None,
                 "payload_json": "{}"})
    prev = te
  if records:
    ev.append({"session_id": sid, "page_load_id": "mturk", "seq": len(ev), "kind": "submit",
               "t_client": t0 + prev, "t_server": None, "payload_json": "{}"})
  checks, passed = _checks(raw.get("check_results"), cond)
  if raw.get("passed_checks") is not None:
    passed = bool(raw["passed_checks"])
  tables["sessions"].append({
      "id": sid, "token_sha256": None, "participant_id": pid, "slot_id": k, "condition": cond,
      "task_id": f"{cond}/task_{k:03d}", "state": "complete" if records else "abandoned",
      "started_at": t0, "completed_at": t0 + prev if records else None, "client_json": "{}",
      "completion_code": None,
      "exclusion_json": json.dumps(checks, sort_keys=True) if checks is not None else None,
      "passed": passed})
  tables["responses"] += rows
  tables["events"] += ev
  return rows
