"""The §3.8 export format: round trip folder and zip, manifest checks, the jsPsych table."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest

from cv_jax.human import export_format as ef

SHA = "ab" * 32


def _tables():
  t0 = 1_700_000_000_000.0
  participants = [dict(id=1, study_id=1, external_id="P1", source="sim", ids_json={"pid": "P1"},
                       blocked=False, created_at=t0)]
  sessions = [dict(id=7, token_sha256="cd" * 32, participant_id=1, slot_id=3,
                   condition="natural", task_id="natural/task_001", state="complete",
                   started_at=t0, completed_at=t0 + 200_000, client_json={"w": 1280},
                   completion_code="C0DE", exclusion_json={"catch_trials": {"passed": True}},
                   passed=True)]
  responses = [
      dict(session_id=7, phase="main", attempt=0, entry_index=1, trial_id="u/set00",
           mode="normal", max_side="left", chosen_side="left", choice="max", correct=True,
           confidence=3, button_index=0, rt_ms=1234.5, t_shown=t0 + 40_000,
           t_choice=t0 + 41_234.5, t_continue=t0 + 42_000, page_load_id="pl1",
           t_server=t0 + 41_300, raw_json="{}"),
      dict(session_id=7, phase="practice", attempt=1, entry_index=0, trial_id="p/set03",
           mode="practice", max_side="right", chosen_side="left", choice="min", correct=False,
           confidence=1, button_index=2, rt_ms=900, t_shown=t0 + 25_000, t_choice=t0 + 25_900,
           t_continue=None, page_load_id="pl1", t_server=t0 + 25_950, raw_json=None),
  ]
  events = [dict(session_id=7, page_load_id="pl1", seq=i, kind=k, t_client=t0 + dt,
                 t_server=t0 + dt + 20, payload_json=p)
            for i, (k, dt, p) in enumerate([
                ("run_start", 0, "{}"), ("instructions_start", 1000, "{}"),
                ("instructions_end", 21000, "{}"), ("fullscreen_enter", 22000, "{}"),
                ("feedback", 190_000, json.dumps({"feedback": "fine, \"thanks\""})),
                ("submit", 200_000, "{}")])]
  anomalies = [dict(session_id=7, kind="conflict", payload_json={"x": [1, 2]},
                    t_server=t0 + 5)]
  draws = [dict(session_id=7, attempt=1, entries_json=[0, 3, 4, 5])]
  return dict(participants=participants, sessions=sessions, responses=responses,
              events=events, practice_draws=draws, anomalies=anomalies)


@pytest.mark.parametrize("name", ["export", "export.zip"])
def test_round_trip(tmp_path, name):
  tables = _tables()
  out = ef.write_export(tmp_path / name, tables, experiment_sha256=SHA, source="sim",
                        extra={"note": "x"})
  got = ef.read_export(out)
  m = got.manifest
  assert m["schema"] == "cv_jax.human_export" and m["version"] == "1.0.0"
  assert m["experiment_sha256"] == SHA and m["source"] == "sim" and m["note"] == "x"
  assert m["counts"] == {"participants": 1, "sessions": 1, "responses": 2, "events": 6,
                         "practice_draws": 1, "anomalies": 1, "trials_jspsych": 6}
  for t in ef.TABLES:
    assert [list(r) for r in got[t]] == [[c for c, _ in ef.COLUMNS[t]]] * len(got[t])
  r = got["responses"][0]
  assert r["correct"] is True and r["rt_ms"] == 1234.5 and r["confidence"] == 3
  assert isinstance(r["attempt"], int) and r["t_shown"] == 1_700_000_040_000.0
  assert got["responses"][1]["t_continue"] is None and got["responses"][1]["raw_json"] is None
  assert json.loads(got["sessions"][0]["exclusion_json"]) == {"catch_trials": {"passed": True}}
  assert got["sessions"][0]["passed"] is True and got["participants"][0]["blocked"] is False
  assert json.loads(got["events"][4]["payload_json"])["feedback"] == 'fine, "thanks"'
  # the JSON twin of the jsPsych table holds the same rows
  if name.endswith(".zip"):
    with zipfile.ZipFile(out) as z:
      js = json.loads(z.read("trials_jspsych.json"))
  else:
    js = json.loads((out / "trials_jspsych.json").read_text())
  assert len(js) == len(got.jspsych)
  assert [r["trial_type"] for r in js] == [r["trial_type"] for r in got.jspsych]


def test_jspsych_table():
  js = ef.jspsych_rows(_tables())
  assert [r["trial_type"] for r in js] == [
      "instructions", "fullscreen", ef.TRIAL_TYPE, ef.TRIAL_TYPE, "survey-text",
      "html-button-response"]
  assert [r["trial_index"] for r in js] == list(range(6))
  ins, _, prac, main, survey, _ = js
  assert ins["rt"] == 20_000 and ins["time_elapsed"] == 21_000
  assert prac["is_demo"] and prac["phase"] == "practice" and not prac["catch_trial"]
  assert prac["switched_queries"] is False and prac["button_pressed"] == 2
  assert prac["time_elapsed"] == 25_900  # no Continue time: the choice
  assert main["switched_queries"] is True and main["time_elapsed"] == 42_000
  assert main["response"] == "0" and main["rt"] == 1234.5 and main["choice"] == "max"
  assert json.loads(survey["response"]) == {"feedback": 'fine, "thanks"'}
  assert all(r["session_id"] == 7 and r["participant_id"] == 1 for r in js)
  assert all(r["task_id"] == "natural/task_001" for r in js)


def test_manifest_checks(tmp_path):
  out = ef.write_export(tmp_path / "e", _tables(), experiment_sha256=SHA)
  # a row added behind the manifest's back
  with open(out / "events.csv", "a", newline="") as f:
    csv.writer(f).writerow([7, "pl2", 9, "resume", 1, 2, "{}"])
  with pytest.raises(ef.ExportError, match="manifest says 6 rows in events"):
    ef.read_export(out)
  m = json.loads((out / "manifest.json").read_text())
  m["schema"] = "other"
  (out / "manifest.json").write_text(json.dumps(m))
  with pytest.raises(ef.ExportError, match="not a cv_jax.human_export"):
    ef.read_export(out)
  m["schema"], m["version"] = ef.SCHEMA_NAME, "2.0.0"
  (out / "manifest.json").write_text(json.dumps(m))
  with pytest.raises(ef.ExportError, match="not compatible"):
    ef.read_export(out)
  with pytest.raises(ef.ExportError, match="neither"):
    ef.read_export(tmp_path / "missing")
  with pytest.raises(ef.ExportError, match="unknown table"):
    ef.write_export(tmp_path / "x", {"slots": []}, experiment_sha256=SHA)
  with pytest.raises(ef.ExportError, match="64 lowercase hex"):
    ef.write_export(tmp_path / "x", {}, experiment_sha256="nope")


def test_empty_export(tmp_path):
  got = ef.read_export(ef.write_export(tmp_path / "e", {}, experiment_sha256=None))
  assert all(got[t] == [] for t in ef.TABLES) and got.jspsych == []
