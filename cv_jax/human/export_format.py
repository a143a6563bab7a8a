"""The response export (human_experiment_spec §3.8): a folder or zip of CSV tables + manifest.

Layout (schema `cv_jax.human_export`, version 1.0.0):

    manifest.json           {"schema", "version", "experiment_sha256", "exported_at", "source",
                             "counts": {table: rows}, "files": [...], ...}
    participants.csv  sessions.csv  responses.csv  events.csv  practice_draws.csv  anomalies.csv
    trials_jspsych.csv      the jsPsych-style flat trial table (one row per page or trial)
    trials_jspsych.json     the same rows as a JSON list

Columns are the data model's (§3.5), in the order of `COLUMNS`; each has a type (`int`,
`float`, `bool`, `str`, `json`). In the CSV an empty cell is None (so an empty string reads back
as None); booleans are written `true`/`false`; `json` columns hold JSON text and are read back as
that text (decode with `json.loads`). Times are epoch milliseconds (UTC), durations `rt_ms` in
ms. Practice responses have `attempt` 1, 2, ...; main responses attempt 0. `button_index` is the
paper's `button_pressed` (0-2 under the left image, labelled 3 2 1; 3-5 under the right one,
labelled 1 2 3) and `confidence` the label shown under the clicked button.

`write_export(out, tables, experiment_sha256=...)` writes all of it (a `.zip` path writes a zip)
and derives the jsPsych table with `jspsych_rows`; `read_export(path)` reads either form back
into typed rows and checks the manifest's schema, version and row counts.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import pathlib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SCHEMA_NAME = "cv_jax.human_export"
SCHEMA_VERSION = "1.0.0"

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "participants": (
        ("id", "int"), ("study_id", "int"), ("external_id", "str"), ("source", "str"),
        ("ids_json", "json"), ("blocked", "bool"), ("created_at", "float")),
    "sessions": (
        ("id", "int"), ("token_sha256", "str"), ("participant_id", "int"), ("slot_id", "int"),
        ("condition", "str"), ("task_id", "str"), ("state", "str"), ("started_at", "float"),
        ("completed_at", "float"), ("client_json", "json"), ("completion_code", "str"),
        ("exclusion_json", "json"), ("passed", "bool")),
    "responses": (
        ("session_id", "int"), ("phase", "str"), ("attempt", "int"), ("entry_index", "int"),
        ("trial_id", "str"), ("mode", "str"), ("max_side", "str"), ("shown_left", "str"),
        ("shown_right", "str"), ("chosen_side", "str"), ("choice", "str"), ("correct", "bool"),
        ("confidence", "int"), ("button_index", "int"), ("rt_ms", "float"),
        ("t_shown", "float"), ("t_choice", "float"), ("t_continue", "float"),
        ("page_load_id", "str"), ("t_server", "float"), ("raw_json", "json")),
    "events": (
        ("session_id", "int"), ("page_load_id", "str"), ("seq", "int"), ("kind", "str"),
        ("t_client", "float"), ("t_server", "float"), ("payload_json", "json")),
    "practice_draws": (
        ("session_id", "int"), ("attempt", "int"), ("entries_json", "json")),
    "anomalies": (
        ("session_id", "int"), ("kind", "str"), ("payload_json", "json"), ("t_server", "float")),
}
"""Table -> ((column, type), ...), the data model of §3.5."""
TABLES = tuple(COLUMNS)

JSPSYCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trial_type", "str"), ("trial_index", "int"), ("time_elapsed", "float"), ("rt", "float"),
    ("response", "str"), ("participant_id", "int"), ("session_id", "int"), ("task_id", "str"),
    ("condition", "str"), ("phase", "str"), ("attempt", "int"), ("entry_index", "int"),
    ("choice", "str"), ("correct", "bool"), ("confidence", "int"), ("max_side", "str"),
    ("button_pressed", "int"), ("switched_queries", "bool"), ("catch_trial", "bool"),
    ("is_demo", "bool"))
"""Columns of `trials_jspsych.csv`: jsPsych's own fields, then ours and the paper's (§1.4)."""
TRIAL_TYPE = "cf-image-confidence-response"
"""The paper's trial type name (its jsPsych plugin)."""

CONFIDENCE_LABELS = (3, 2, 1, 1, 2, 3)
"""The label shown under button 0..5 (left image: 3 2 1, right image: 1 2 3)."""


class ExportError(ValueError):
  """An export folder is malformed or inconsistent (the message names the problem)."""


@dataclasses.dataclass
class Export:
  """A read export: the manifest, typed rows per table, and the jsPsych rows."""
  manifest: dict[str, Any]
  tables: dict[str, list[dict[str, Any]]]
  jspsych: list[dict[str, Any]]

  def __getitem__(self, table: str) -> list[dict[str, Any]]:
    return self.tables[table]


# ------------------------------------------------------------------------------ cells

def _format(value: Any, kind: str) -> str:
  if value is None:
    return ""
  if kind == "bool":
    if isinstance(value, str):
      value = _parse(value, "bool")
    return "true" if value else "false"
  if kind == "int":
    return str(int(value))
  if kind == "float":
    v = float(value)
    if not math.isfinite(v):
      return ""
    return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
  if kind == "json":
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
  return str(value)


def _parse(text: str, kind: str) -> Any:
  if text == "":
    return None
  if kind == "int":
    return int(float(text)) if "." in text or "e" in text.lower() else int(text)
  if kind == "float":
    return float(text)
  if kind == "bool":
    t = text.strip().lower()
    if t in ("true", "1", "t", "yes"):
      return True
    if t in ("false", "0", "f", "no"):
      return False
    raise ExportError(f"not a boolean: {text!r}")
  return text


def _csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]
              ) -> tuple[str, int]:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow([c for c, _ in columns])
  n = 0
  for r in rows:
    w.writerow([_format(r.get(c), k) for c, k in columns])
    n += 1
  return buf.getvalue(), n


def _read_csv(text: str, columns: Sequence[tuple[str, str]], name: str) -> list[dict[str, Any]]:
  reader = csv.reader(io.StringIO(text))
  try:
    header = next(reader)
  except StopIteration:
    raise ExportError(f"{name} is empty (no header line)") from None
  kinds = dict(columns)
  missing = [c for c, _ in columns if c not in header]
  if missing:
    raise ExportError(f"{name} lacks the column(s) {missing}")
  rows = []
  for line, cells in enumerate(reader, start=2):
    if len(cells) != len(header):
      raise ExportError(f"{name} line {line}: {len(cells)} cells, header has {len(header)}")
    try:
      rows.append({h: _parse(v, kinds.get(h, "str")) for h, v in zip(header, cells)})
    except (ValueError, ExportError) as e:
      raise ExportError(f"{name} line {line}: {e}") from None
  return rows


# ------------------------------------------------------------------------------ jsPsych table

def _loads(x: Any) -> Any:
  if x is None or x == "":
    return {}
  return json.loads(x) if isinstance(x, str) else x


def jspsych_rows(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
  """The jsPsych-style flat trial table of every session, in presentation order.

  Per session: `instructions` (from instructions_start to instructions_end, rt = the time
  between), `fullscreen` (fullscreen_enter), each stored response as a
  `cf-image-confidence-response` row (practice first, by attempt, then main, by entry; `rt` =
  rt_ms, `response` = `button_pressed` = button_index, `switched_queries` = the max image is on
  the left, `is_demo` = practice), the feedback (`survey-text`, response = {"feedback": text}
  as JSON) and the submit page (`html-button-response`). `time_elapsed` is ms since the
  session's first `run_start` event (None without one); a row's time is its end (the trial's
  Continue click, else its choice).
  """
  sessions = {s["id"]: s for s in tables.get("sessions", [])}
  ev_by: dict[Any, list] = {}
  for e in tables.get("events", []):
    ev_by.setdefault(e["session_id"], []).append(e)
  resp_by: dict[Any, list] = {}
  for r in tables.get("responses", []):
    resp_by.setdefault(r["session_id"], []).append(r)
  out: list[dict[str, Any]] = []
  for sid in sorted(set(sessions) | set(ev_by) | set(resp_by), key=lambda x: (str(type(x)), x)):
    s = sessions.get(sid, {})
    evs = sorted(ev_by.get(sid, []), key=lambda e: (e.get("t_client") or 0, e.get("seq") or 0))
    starts = [e["t_client"] for e in evs if e["kind"] == "run_start" and e.get("t_client")
              is not None]
    t0 = min(starts) if starts else None
    base = {"participant_id": s.get("participant_id"), "session_id": sid,
            "task_id": s.get("task_id"), "condition": s.get("condition")}
    rows: list[tuple[float, dict]] = []

    def first(kind, evs=evs):
      return next((e for e in evs if e["kind"] == kind), None)

    ins0, ins1 = first("instructions_start"), first("instructions_end")
    if ins1 is not None:
      rt = (ins1["t_client"] - ins0["t_client"]) if ins0 is not None else None
      rows.append((ins1["t_client"], {"trial_type": "instructions", "rt": rt}))
    fs = first("fullscreen_enter")
    if fs is not None:
      rows.append((fs["t_client"], {"trial_type": "fullscreen", "response": "true"}))
    seen = set()
    for r in sorted(resp_by.get(sid, []),
                    key=lambda r: (r["phase"] != "practice", r.get("attempt") or 0,
                                   r["entry_index"])):
      key = (r["phase"], r.get("attempt") or 0, r["entry_index"])
      if key in seen:
        continue
      seen.add(key)
      t_end = next((r.get(k) for k in ("t_continue", "t_choice", "t_shown")
                    if r.get(k) is not None), None)
      button = r.get("button_index")
      rows.append((t_end if t_end is not None else math.inf, {
          "trial_type": TRIAL_TYPE, "rt": r.get("rt_ms"),
          "response": None if button is None else str(button), "phase": r["phase"],
          "attempt": r.get("attempt"), "entry_index": r["entry_index"], "choice": r.get("choice"),
          "correct": r.get("correct"), "confidence": r.get("confidence"),
          "max_side": r.get("max_side"),
          "button_pressed": button,
          "switched_queries": None if r.get("max_side") is None else r["max_side"] == "left",
          "catch_trial": r.get("mode") == "catch_trial", "is_demo": r["phase"] == "practice"}))
    fb = first("feedback")
    if fb is not None:
      text = _loads(fb.get("payload_json")).get("feedback", "")
      rows.append((fb["t_client"], {"trial_type": "survey-text",
                                        "response": json.dumps({"feedback": text})}))
    sub = first("submit")
    if sub is not None:
      rows.append((sub["t_client"], {"trial_type": "html-button-response", "response": "0"}))
    rows.sort(key=lambda x: x[0])
    for i, (t, row) in enumerate(rows):
      full = {c: None for c, _ in JSPSYCH_COLUMNS}
      full.update(base)
      full.update(row)
      full["trial_index"] = i
      full["time_elapsed"] = (t - t0) if (t0 is not None and math.isfinite(t)) else None
      out.append(full)
  return out


# ------------------------------------------------------------------------------ write / read

def _sha256_ok(s: str | None) -> bool:
  return s is None or (len(s) == 64 and all(c in "0123456789abcdef" for c in s))


def write_export(out: str | os.PathLike, tables: Mapping[str, Iterable[Mapping[str, Any]]], *,
                 experiment_sha256: str | None, source: str | None = None,
                 exported_at: str | None = None, extra: Mapping[str, Any] | None = None
                 ) -> pathlib.Path:
  """Write an export folder (or a zip, when `out` ends in `.zip`); returns its path.

  Args:
    out: target folder (created; existing export files are replaced) or `.zip` file.
    tables: table name -> rows (dicts keyed by the §3.5 column names; missing keys are empty,
      unknown keys are ignored); tables not given are written empty.
    experiment_sha256: sha256 hex digest of the `experiment.json` the study served.
    source: where the data came from ("server", "sim", "mturk", ...), recorded in the manifest.
    exported_at: ISO-8601 UTC time (default now).
    extra: more manifest fields (e.g. the simulator's settings).
  """
  unknown = sorted(set(tables) - set(TABLES))
  if unknown:
    raise ExportError(f"unknown table(s) {unknown}; known: {list(TABLES)}")
  if not _sha256_ok(experiment_sha256):
    raise ExportError(f"experiment_sha256 must be 64 lowercase hex digits, got "
                      f"{experiment_sha256!r}")
  rows = {t: list(tables.get(t, ())) for t in TABLES}
  files: dict[str, str] = {}
  counts: dict[str, int] = {}
  for t in TABLES:
    files[f"{t}.csv"], counts[t] = _csv_text(rows[t], COLUMNS[t])
  js = jspsych_rows(rows)
  files["trials_jspsych.csv"], counts["trials_jspsych"] = _csv_text(js, JSPSYCH_COLUMNS)
  files["trials_jspsych.json"] = json.dumps(js, indent=0) + "\n"
  manifest = {
      "schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "experiment_sha256": experiment_sha256,
      "exported_at": exported_at or _dt.datetime.now(_dt.UTC).isoformat(
          timespec="seconds"),
      "source": source, "counts": counts, "files": sorted(files) + ["manifest.json"],
  }
  for k, v in (extra or {}).items():
    if k in manifest:
      raise ExportError(f"extra manifest field {k!r} would replace a standard one")
    manifest[k] = v
  files["manifest.json"] = json.dumps(manifest, indent=1) + "\n"
  out = pathlib.Path(out)
  if out.suffix == ".zip":
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
      for name, text in files.items():
        z.writestr(name, text)
    os.replace(tmp, out)
  else:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
      if name != "manifest.json":
        (out / name).write_text(text)
    (out / "manifest.json").write_text(files["manifest.json"])  # last: marks a complete export
  return out


def _reader(path: pathlib.Path):
  if path.is_file() and zipfile.is_zipfile(path):
    z = zipfile.ZipFile(path)
    names = set(z.namelist())
    prefix = ""
    if "manifest.json" not in names:  # a zip of the folder itself
      tops = [n for n in names if n.endswith("/manifest.json") and n.count("/") == 1]
      if len(tops) == 1:
        prefix = tops[0][: -len("manifest.json")]

    def read(name):
      full = prefix + name
      if full not in names:
        raise ExportError(f"{path} has no {name}")
      return z.read(full).decode("utf-8")
    return read
  if path.is_dir():
    def read(name):
      p = path / name
      if not p.is_file():
        raise ExportError(f"{path} has no {name}")
      return p.read_text(encoding="utf-8")
    return read
  raise ExportError(f"{path} is neither an export folder nor a zip file")


def read_export(path: str | os.PathLike) -> Export:
  """Read an export folder or zip into typed rows; check schema, version and row counts."""
  path = pathlib.Path(path)
  read = _reader(path)
  try:
    manifest = json.loads(read("manifest.json"))
  except json.JSONDecodeError as e:
    raise ExportError(f"{path}/manifest.json is not JSON: {e}") from None
  if manifest.get("schema") != SCHEMA_NAME:
    raise ExportError(f"{path} is not a {SCHEMA_NAME} export (schema = "
                      f"{manifest.get('schema')!r})")
  major = str(manifest.get("version", "")).split(".")[0]
  if major != SCHEMA_VERSION.split(".")[0]:
    raise ExportError(f"{path}: export version {manifest.get('version')} is not compatible "
                      f"with {SCHEMA_VERSION}")
  counts = manifest.get("counts", {})
  tables = {}
  for t in TABLES:
    tables[t] = _read_csv(read(f"{t}.csv"), COLUMNS[t], f"{t}.csv")
  js = _read_csv(read("trials_jspsych.csv"), JSPSYCH_COLUMNS, "trials_jspsych.csv")
  for name, got in [(t, len(tables[t])) for t in TABLES] + [("trials_jspsych", len(js))]:
    if name in counts and int(counts[name]) != got:
      raise ExportError(f"{path}: manifest says {counts[name]} rows in {name}, the table has "
                        f"{got}")
  missing = [t for t in TABLES if t not in counts]
  if missing:
    raise ExportError(f"{path}: manifest has no row counts for {missing}")
  return Export(manifest=manifest, tables=tables, jspsych=js)


def experiment_sha256(experiment_dir_or_file: str | os.PathLike) -> str:
  """sha256 hex digest of an `experiment.json` (given it or its folder)."""
  import hashlib
  p = pathlib.Path(experiment_dir_or_file)
  if p.is_dir():
    p = p / "experiment.json"
  return hashlib.sha256(p.read_bytes()).hexdigest()
