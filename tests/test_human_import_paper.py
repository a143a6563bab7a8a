"""The paper's raw MTurk result format (written here; the real data is not public) -> export:
a restricted unpickler, the corrected confidence labels, exclusion values as the paper's."""

from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

from cv_jax.human import analysis, exclusion, export_format, import_paper, report

# The paper's `mturk` module as far as its pickles need it.
_mturk = types.ModuleType("mturk")
_mturk.RepeatedTaskResult = collections.namedtuple(
    "RepeatedTaskResult",
    ["task_id", "raw_responses", "responses", "approved_responses", "rejected_responses"])
_mturk.RepeatedTaskResult.__module__ = "mturk"


@pytest.fixture()
def mturk_module(monkeypatch):
  monkeypatch.setitem(sys.modules, "mturk", _mturk)
  return _mturk


def _structure(n_tasks: int, rng) -> dict:
  tasks = []
  for k in range(1, n_tasks + 1):
    b = (k - 1) % 10
    trials = []
    for layer in range(9):
      for kernel in (1, 3):
        base = rng.uniform(2, 6)
        trials.append({"queries": f"/data/channel/sampled_trials/layer_{layer}/kernel_size_"
                                  f"{kernel}/channel_0/natural_images/batch_{b}/"
                                  "40_percent_side_length",
                       "mode": "normal",
                       "base_query_activation": "%.12f" % base,
                       "min_query_activation": "%.12f" % (base * 0.5),
                       "max_query_activation": "%.12f" % (base * 0.9),
                       **{f"{m}_query_{key}": "%.12f" % rng.uniform(0, 1)
                          for m in ("min", "max")
                          for key in ("center_distance", "patch_std", "patch_saliency")}})
    for layer, kernel, bb in ((6, 3, 0), (4, 3, 1), (7, 1, 14)):
      trials.append({"queries": f"/d/layer_{layer}/kernel_size_{kernel}/channel_1/"
                                f"natural_images/batch_{bb}/40_percent_side_length",
                     "mode": "catch_trial"})
    order = rng.permutation(len(trials))
    tasks.append({"index": k, "raw_trials": [], "raw_catch_trials": [],
                  "trials": [trials[i] for i in order]})
  return {"tasks": tasks}


def _records(structure_task, rng, *, n_blocks=2, instr_ms=31_000.0):
  """jsPsych records of one session: instructions, demo blocks, 21 trials, survey, submit."""
  recs, t = [], 0.0

  def add(**kw):
    nonlocal t
    t += kw.pop("dt")
    recs.append({"time_elapsed": t, "trial_index": len(recs), "internal_node_id": "0.0", **kw})

  for _ in range(3):
    add(trial_type="instructions", dt=instr_ms / 4, rt=instr_ms / 4)
  add(trial_type="fullscreen", dt=instr_ms / 4 - 500, success=True)
  add(trial_type="call-function", dt=500, value=None)
  for blk in range(n_blocks):
    if blk:
      add(trial_type="call-function", dt=10, value=None)
    for j in range(4):
      ok = not (blk < n_blocks - 1 and j == 0)
      add(trial_type=import_paper.TRIAL_TYPE, dt=3000, rt=1500.0, button_pressed=5,
          switched_queries=False, choice="b" if ok else "a", correct=ok, confidence=3,
          catch_trial=False, is_demo=True)
  add(trial_type="instructions", dt=4000, rt=4000)
  main = []
  for tr in structure_task["trials"]:
    catch = tr["mode"] == "catch_trial"
    sw = bool(rng.random() < 0.5)
    ok = True if catch else bool(rng.random() < 0.7)
    button = int(rng.integers(6))
    left = button < 3
    # the chosen image is the max one iff correct; left is the max iff switched
    if (left == sw) != ok:
      button = 5 - button  # mirror to the other side, same label
    add(trial_type=import_paper.TRIAL_TYPE, dt=float(rng.uniform(3000, 9000)),
        rt=float(rng.uniform(800, 4000)), button_pressed=button, switched_queries=sw,
        choice="b" if ok else "a", correct=ok, confidence=button % 3 + 1, catch_trial=catch,
        is_demo=False)
    main.append(recs[-1])
  add(trial_type="survey-text", dt=12_000, rt=12_000,
      responses=json.dumps({"feedback": "nice study"}))
  add(trial_type="instructions", dt=2000, rt=2000)
  return recs, main


def _write_paper(tmp_path, protocol=4, as_list=False, n_tasks=3):
  rng = np.random.default_rng(0)
  sdir, pdir = tmp_path / "structures", tmp_path / "results"
  sdir.mkdir()
  truth = {}
  for folder, stem in (("natural", "natural"), ("optimized", "optimized"), ("none", "natural")):
    st = _structure(n_tasks, np.random.default_rng(7))  # same queries in every condition
    (sdir / f"{stem}_with_baselines.json").write_text(json.dumps(st))
    (pdir / folder).mkdir(parents=True)
    for task in st["tasks"]:
      k = task["index"]
      raws = []
      for rep in range(2 if k == 1 else 1):
        recs, main = _records(task, rng, instr_ms=31_000.0 if rep == 0 else 8_000.0)
        catch = [r["correct"] for r in main if r["catch_trial"]]
        checks = {
            "demo_trials": (True, {"n_demo_trials_blocks": 2}),
            "catch_trials": (True, {"ratio": sum(catch) / 3, "correctly_answered": catch}),
            "total_response_time": (True, {"total_time": recs[-1]["time_elapsed"] / 1000}),
            "row_variability": (True, {"n_upper_row": sum(r["button_pressed"] < 3 for r in main),
                                       "n_lower_row": sum(r["button_pressed"] > 2 for r in main)}),
            "instruction_time": (rep == 0, {"total_time": (31_000.0 if rep == 0 else 8_000.0)
                                            / 1000})}
        raws.append({"main_data": [r for r in recs if r["trial_type"] ==
                                   import_paper.TRIAL_TYPE],
                     "raw_data": recs, "task_id": f"{folder}_9_references-{k}",
                     "passed_checks": rep == 0, "check_results": checks,
                     "worker_id": f"A{folder}{k}{rep}"})
        truth[(folder, k, rep)] = (recs, main)
      obj = _mturk.RepeatedTaskResult(f"{folder}_9_references-{k}", raws, raws, raws[:1],
                                      raws[1:])
      (pdir / folder / f"result_task_{k}.pkl").write_bytes(
          pickle.dumps([obj] if as_list else obj, protocol=protocol))
  return pdir, sdir, truth


@pytest.mark.parametrize("protocol,as_list", [(4, False), (2, True), (0, False)])
def test_import_round_trip(tmp_path, mturk_module, protocol, as_list):
  pdir, sdir, truth = _write_paper(tmp_path, protocol, as_list)
  out = import_paper.import_paper(pdir, sdir, tmp_path / "export")
  exp = export_format.read_export(out)
  assert exp.manifest["source"] == "mturk"
  assert exp.manifest["counts"]["sessions"] == 3 * 4
  conds = {s["condition"] for s in exp["sessions"]}
  assert conds == {"natural", "synthetic", "none"}
  doc = json.loads((out / "experiment.json").read_text())
  by_sess = {}
  for r in exp["responses"]:
    by_sess.setdefault(r["session_id"], []).append(r)
  ev_by = {}
  for e in exp["events"]:
    ev_by.setdefault(e["session_id"], []).append(e)
  n_left_flip = 0
  for s in exp["sessions"]:
    rows = by_sess[s["id"]]
    main = [r for r in rows if r["phase"] == "main"]
    assert len(main) == 21 and sum(r["mode"] == "catch_trial" for r in main) == 3
    prac = [r for r in rows if r["phase"] == "practice"]
    assert sorted({r["attempt"] for r in prac}) == [1, 2] and len(prac) == 8
    for r in main:
      assert r["correct"] == (r["chosen_side"] == r["max_side"])
      assert r["confidence"] == export_format.CONFIDENCE_LABELS[r["button_index"]]
      pub = json.loads(r["raw_json"])["confidence_as_published"]
      assert pub == r["button_index"] % 3 + 1
      n_left_flip += r["chosen_side"] == "left" and pub != r["confidence"]
    # the exclusion recomputed from the imported rows gives the paper's values
    stored = json.loads(s["exclusion_json"])
    checks, passed = exclusion.evaluate(s["condition"], rows, ev_by[s["id"]])
    if s["condition"] != "none":
      assert checks["practice_attempts"]["value"] == stored["practice_attempts"]["value"] == 2
    assert checks["instruction_time"]["value"] == pytest.approx(
        stored["instruction_time"]["value"])
    assert checks["total_time"]["value"] == pytest.approx(stored["total_time"]["value"])
    assert checks["catch_trials"]["value"] == pytest.approx(stored["catch_trials"]["value"])
    assert s["passed"] == (stored["instruction_time"]["passed"])
  assert n_left_flip > 0  # the paper's left-side labels were inverted
  # main rows join the structure by position: the unit of row i is the structure's trial i
  first = next(s for s in exp["sessions"] if s["condition"] == "natural" and s["slot_id"] == 2)
  st = json.loads((sdir / "natural_with_baselines.json").read_text())["tasks"][1]["trials"]
  trials = {t["id"]: t for t in doc["trials"]}
  for r in sorted(by_sess[first["id"]], key=lambda r: r["entry_index"]):
    if r["phase"] == "main":
      q = import_paper.parse_query_path(st[r["entry_index"]]["queries"])
      t = trials[r["trial_id"]]
      assert t["image_set"] == q["batch"]
      assert t["unit"].startswith(import_paper.BLOCKS[q["layer"]])
      if r["mode"] == "normal":
        assert t["activations"]["base"] == pytest.approx(
            float(st[r["entry_index"]]["base_query_activation"]))
  # worker ids are not stored in clear
  assert not any(p["external_id"].startswith("A") for p in exp["participants"])


def test_analyze_imported(tmp_path, mturk_module):
  pdir, sdir, truth = _write_paper(tmp_path)
  out = import_paper.import_paper(pdir, sdir, tmp_path / "export")
  results, html = report.run(out, None, tmp_path / "report", exclusion="stored")
  assert results["counts"]["natural"] == {
      "started": 4, "completed": 4, "abandoned": 0, "excluded": 1,
      "excluded_per_criterion": {"catch_trials": 0, "instruction_time": 1, "total_time": 0,
                                 "practice_attempts": 0, "row_variability": 0,
                                 "row_variability_intended": results["counts"]["natural"][
                                     "excluded_per_criterion"]["row_variability_intended"]},
      "duplicates": 0, "included": 3}
  main = [r for (f, k, rep), (_, m) in truth.items() if f == "optimized" and rep == 0
          for r in m if not r["catch_trial"]]
  assert results["accuracy"]["synthetic"]["mean"] == pytest.approx(
      np.mean([r["correct"] for r in main]))
  assert html.is_file()
  doc = json.loads((out / "experiment.json").read_text())
  again = analysis.analyze(export_format.read_export(out), doc)  # recomputed exclusion agrees
  assert again["counts"]["natural"]["included"] == 3


class _Evil:
  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_refused(tmp_path, mturk_module):
  marker = tmp_path / "pwned"
  for payload in (_Evil(marker), _mturk.RepeatedTaskResult("natural-1", [_Evil(marker)], [], [],
                                                           [])):
    data = pickle.dumps(payload, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
      import_paper.safe_load(data)
    assert not marker.exists()
  evil_eval = pickle.dumps(types.SimpleNamespace(a=1))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    import_paper.safe_load(evil_eval)
  (tmp_path / "r" / "natural").mkdir(parents=True)
  (tmp_path / "r" / "natural" / "result_task_1.pkl").write_bytes(pickle.dumps(_Evil(marker)))
  (tmp_path / "s").mkdir()
  (tmp_path / "s" / "natural.json").write_text(json.dumps({"tasks": []}))
  cmd = [sys.executable, "-m", "cv_jax.cli", "human", "import-paper",
         f"--pkl_dir={tmp_path / 'r'}", f"--structure_dir={tmp_path / 's'}",
         f"--out={tmp_path / 'o'}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1 and not marker.exists()
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1 and "refusing to load" in err[0], proc.stderr
  assert err[0].startswith("cv-jax human import-paper: error: ")
