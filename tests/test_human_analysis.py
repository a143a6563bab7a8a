"""The human analysis against independent implementations (sklearn, scipy, closed forms) and
one figure recomputed by hand from the raw CSVs of an export."""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from cv_jax.experiment import report as machine_report
from cv_jax.human import analysis, export_format, report, simulate
from cv_jax.human import stats as hstats
from cv_jax.testing import human_doc


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """An IRT study (participants agree above chance) with some misbehaviours, as an export."""
  root = tmp_path_factory.mktemp("study")
  doc = human_doc.make_doc(n_tasks=20, n_sets=5, seed=3)
  (root / "exp").mkdir()
  (root / "exp" / "experiment.json").write_text(json.dumps(doc))
  sim = simulate.simulate(doc, policy="irt", seed=1,
                          misbehave=["skim@3", "catch_fail@2", "abandon_at:9@2", "slow@1"])
  sim.tables["sessions"].append(dict(sim.tables["sessions"][0], id=10_000))  # a 2nd pass of a task
  sim.tables["responses"] += [dict(r, session_id=10_000) for r in sim.tables["responses"]
                              if r["session_id"] == sim.tables["sessions"][0]["id"]]
  sim.tables["events"] += [dict(e, session_id=10_000, t_client=e["t_client"] + 1e6,
                                t_server=e["t_server"] + 1e6)
                           for e in sim.tables["events"]
                           if e["session_id"] == sim.tables["sessions"][0]["id"]]
  for r in sim.tables["responses"]:
    if r["session_id"] == 10_000:
      r["t_shown"] += 1e6
      r["t_choice"] += 1e6
      r["t_server"] += 1e6
  sim.tables["sessions"][-1]["completed_at"] += 1e6
  path = simulate.write_offline(sim, root / "export",
                                export_format.experiment_sha256(root / "exp"))
  results, html = report.run(path, root / "exp", root / "report")
  return root, doc, sim, results, html


def _main_vectors(doc, exp, included):
  """set -> condition -> session -> {unit: correct}, straight from the export rows."""
  trials = {t["id"]: t for t in doc["trials"]}
  out = {}
  for r in exp["responses"]:
    if r["session_id"] in included and r["phase"] == "main" and r["mode"] == "normal":
      t = trials[r["trial_id"]]
      c = included[r["session_id"]]
      out.setdefault(t["image_set"], {}).setdefault(c, {}).setdefault(r["session_id"], {})[
          t["unit"]] = bool(r["correct"])
  return out


def test_outputs(study):
  root, doc, sim, results, html = study
  names = {p.name for p in (root / "report").iterdir()}
  assert {"report.html", "results_human.json"} <= names
  assert {f"{n}.png" for n in ("accuracy", "rt", "confidence", "baselines", "kappa",
                              "kappa_per_set", "per_layer", "activation_difference",
                              "example_units", "exclusion")} <= names
  text = html.read_text()
  for needle in ("Accuracy per condition", "Cohen&#x27;s kappa", "(22 ± 3)", "Participants"):
    assert needle in text
  saved = json.loads((root / "report" / "results_human.json").read_text())
  assert saved["counts"] == json.loads(json.dumps(results["counts"]))


def test_counts(study):
  _, _, sim, results, _ = study
  n = results["counts"]["all"]
  assert n["started"] == 101 and n["abandoned"] == 2 and n["completed"] == 99
  crit = n["excluded_per_criterion"]
  assert crit["instruction_time"] == 3 and crit["catch_trials"] == 2 and crit["total_time"] == 1
  assert n["excluded"] == 6 and n["duplicates"] == 1 and n["included"] == 99 - 6 - 1
  assert sum(results["counts"][c]["started"] for c in results["conditions"]) == 101


def test_accuracy_by_hand_from_csv(study):
  """Fig. 3A's numbers recomputed from sessions.csv and responses.csv with the csv module."""
  root, _, _, results, _ = study
  with open(root / "export" / "sessions.csv", newline="") as f:
    sessions = list(csv.DictReader(f))
  with open(root / "export" / "responses.csv", newline="") as f:
    responses = list(csv.DictReader(f))
  sessions.sort(key=lambda s: (float(s["completed_at"]) if s["completed_at"] else math.inf,
                               int(s["id"])))
  seen, cond_of = set(), {}
  for s in sessions:  # stored verdicts (same paper rules), first passing session per task
    if s["state"] == "complete" and s["passed"] == "true" and s["task_id"] not in seen:
      seen.add(s["task_id"])
      cond_of[s["id"]] = s["condition"]
  for c in results["conditions"]:
    per = {}
    for r in responses:
      if cond_of.get(r["session_id"]) == c and r["phase"] == "main" and r["mode"] == "normal":
        per.setdefault(r["session_id"], []).append(r["correct"] == "true")
    pooled = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    accs = [sum(v) / len(v) for v in per.values()]
    assert results["accuracy"][c]["mean"] == pytest.approx(pooled, abs=1e-12)
    assert results["accuracy"][c]["sem2"] == pytest.approx(2 * sps.sem(accs, ddof=0), abs=1e-12)
    assert results["accuracy"][c]["n_participants"] == len(per)


def test_kappa_against_sklearn(study):
  root, doc, _, results, _ = study
  exp = export_format.read_export(root / "export")
  inc = {s["session_id"]: s["condition"] for s in results["sessions"] if s["included"]}
  vec = _main_vectors(doc, exp, inc)
  grid = {(t["image_set"], t["unit"]): t for t in doc["trials"] if t["role"] == "main"}
  k = results["kappa"]
  names = k["names"]

  def rater_sets(name, s):
    if name in analysis.BASELINES:
      units = sorted({u for c in vec[s].values() for p in c.values() for u in p})
      return {name: {u: grid[(s, u)]["baselines"][name]["correct"] for u in units}}
    return vec[s].get(name, {})

  def sk(x, y):
    units = sorted(x)
    a, b = [x[u] for u in units], [y[u] for u in units]
    if len(set(a)) == 1 and len(set(b)) == 1 and a == b:
      return float("nan")
    return cohen_kappa_score(a, b)

  for a, b in itertools.combinations_with_replacement(names, 2):
    if a == b and a in analysis.BASELINES:
      continue
    ks = []
    for s in vec:
      ra, rb = rater_sets(a, s), rater_sets(b, s)
      if a == b:
        here = [sk(ra[p], ra[q]) for p, q in itertools.combinations(sorted(ra), 2)]
      else:
        here = [sk(ra[p], rb[q]) for p in ra for q in rb]
      fin_s = [x for x in here if np.isfinite(x)]
      got = k["per_set"][f"{a}|{b}"][str(s)]
      assert (got is None) if not fin_s else got == pytest.approx(np.mean(fin_s), abs=1e-12)
      ks += here
    ks = np.array(ks)
    fin = ks[np.isfinite(ks)]
    i, j = names.index(a), names.index(b)
    assert k["n_pairs"][i][j] == ks.size, (a, b)
    assert k["mean"][i][j] == pytest.approx(fin.mean(), abs=1e-12), (a, b)
    assert k["sem2"][i][j] == pytest.approx(2 * sps.sem(fin, ddof=0), abs=1e-12), (a, b)
    assert k["mean100"][i][j] == int(np.round(fin.mean() * 100, 2).astype(int))
  # IRT participants agree above chance within a condition
  for c in results["conditions"]:
    i = names.index(c)
    assert k["mean"][i][i] > k["sem2"][i][i] > 0


def test_baseline_kappas_equal_machine_side(study):
  _, doc, _, results, _ = study
  machine = machine_report.compute_results(doc)["kappa"]
  k = results["kappa"]
  for a, b in itertools.combinations(["center", "center_published", "variance", "saliency"], 2):
    i, j = machine["names"].index(a), machine["names"].index(b)
    p, q = k["names"].index(a), k["names"].index(b)
    assert k["mean100"][p][q] == machine["mean100"][i][j]
    assert k["sem2_100"][p][q] == machine["sem2_100"][i][j]
    assert k["mean"][p][q] == pytest.approx(machine["mean"][i][j], abs=1e-12)


def test_rt_confidence_baselines(study):
  root, doc, _, results, _ = study
  exp = export_format.read_export(root / "export")
  inc = {s["session_id"]: s["condition"] for s in results["sessions"] if s["included"]}
  trials = {t["id"]: t for t in doc["trials"]}
  rows = [r for r in exp["responses"] if r["session_id"] in inc and r["phase"] == "main"
          and r["mode"] == "normal"]
  for c in results["conditions"]:
    mine = [r for r in rows if inc[r["session_id"]] == c]
    wrong = [r for r in mine if not r["correct"]]
    assert results["rt"][c]["wrong"]["mean"] == pytest.approx(
        np.mean([r["rt_ms"] / 1000 for r in wrong]))
    per = {}
    for r in mine:
      per.setdefault(r["session_id"], []).append(r["rt_ms"] / 1000)
    assert results["rt"][c]["all"]["sem2"] == pytest.approx(
        2 * sps.sem([np.mean(v) for v in per.values()], ddof=0))
    props = results["confidence"][c]["all"]["proportions"]
    assert sum(props) == pytest.approx(1.0)
    assert props[2] == pytest.approx(np.mean([r["confidence"] == 3 for r in mine]))
    # the paper's SEM quirk: over all participants of all conditions, 0 for the others
    everyone = {}
    for r in rows:
      everyone.setdefault(r["session_id"], []).append(r)
    quirk = [np.mean([x["confidence"] == 3 for x in v]) if inc[sid] == c else 0.0
             for sid, v in everyone.items()]
    assert results["confidence"][c]["all"]["sem2_paper"][2] == pytest.approx(
        2 * sps.sem(quirk, ddof=0))
    # higher confidence when correct (the simulator's model)
    cor, wr = results["confidence"][c]["correct"], results["confidence"][c]["wrong"]
    assert cor["proportions"][2] > wr["proportions"][2]
  for b in ("center", "variance", "saliency"):
    want = np.mean([trials[r["trial_id"]]["baselines"][b]["correct"] for r in rows])
    assert results["baselines"]["accuracy"][b]["mean"] == pytest.approx(want)


def test_per_layer_and_activation_difference(study):
  root, doc, _, results, _ = study
  exp = export_format.read_export(root / "export")
  inc = {s["session_id"]: s["condition"] for s in results["sessions"] if s["included"]}
  trials = {t["id"]: t for t in doc["trials"]}
  units = {u["id"]: u for u in doc["units"]}
  rows = [r for r in exp["responses"] if r["session_id"] in inc and r["phase"] == "main"
          and r["mode"] == "normal"]
  sel = [r["correct"] for r in rows if inc[r["session_id"]] == "natural"
         and units[trials[r["trial_id"]]["unit"]]["branch"].startswith("mixed4b/pool")]
  assert results["per_layer"]["accuracy"]["natural"]["pool"]["3"] == pytest.approx(np.mean(sel))
  pts = results["activation_difference"]["3x3"]["points"]["blur"]
  rho = sps.spearmanr(pts["x"], pts["y"]).statistic
  assert results["activation_difference"]["3x3"]["spearman"]["blur"] == pytest.approx(rho)
  ex = results["example_units"]["easy"]
  assert ex["address"].startswith("mixed5a/pool")
  for i, b in enumerate(ex["image_sets"]):
    sel = [r["correct"] for r in rows if inc[r["session_id"]] == "mixed"
           and trials[r["trial_id"]]["unit"] == ex["unit"]
           and trials[r["trial_id"]]["image_set"] == b]
    assert ex["accuracy"]["mixed"][i] == pytest.approx(np.mean(sel))


def test_spearman_and_bins_closed_forms():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 6, 40).astype(float)  # many ties
  y = x + rng.integers(0, 3, 40)
  assert hstats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
  assert hstats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert math.isnan(hstats.spearman([1, 1, 1], [1, 2, 3]))
  bins = hstats.quantile_bins(np.arange(10.0), np.arange(10.0) * 2, 5)
  assert [b["n"] for b in bins] == [2] * 5
  assert [b["mean"] for b in bins] == [1, 5, 9, 13, 17]
  assert [b["std"] for b in bins] == [1.0] * 5
  assert hstats.participant_sem2([0.5, 0.7, 0.9]) == pytest.approx(
      2 * sps.sem([0.5, 0.7, 0.9], ddof=0))


def test_published_confidence_labels():
  doc = human_doc.make_doc(n_tasks=2, n_sets=2)
  sim = simulate.simulate(doc, policy="oracle", conditions=["natural"])
  exp = export_format.Export(manifest={}, tables=sim.tables, jspsych=[])
  shown = analysis.analyze(exp, doc)
  pub = analysis.analyze(exp, doc, confidence_labels="published")
  rows = [r for r in sim.tables["responses"] if r["phase"] == "main" and r["mode"] == "normal"]
  want = np.mean([r["button_index"] % 3 + 1 == 3 for r in rows])
  assert pub["confidence"]["natural"]["all"]["proportions"][2] == pytest.approx(want)
  assert any(r["chosen_side"] == "left" and r["confidence"] != r["button_index"] % 3 + 1
             for r in rows)  # the paper's inversion exists on the left
  assert shown["accuracy"]["natural"]["mean"] == 1.0


def test_cli_errors(tmp_path):
  cmd = [sys.executable, "-m", "cv_jax.cli", "human", "analyze", f"--export={tmp_path}",
         f"--out={tmp_path / 'r'}", f"--experiment={tmp_path}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("cv-jax human analyze: error: "), proc.stderr


def test_experiment_report_links_human_report(tmp_path):
  doc = human_doc.make_doc(n_tasks=2, n_sets=2)
  html = machine_report.write_report(tmp_path, doc, report_set=99)  # no unit figures
  assert f"href='../{machine_report.HUMAN_REPORT}'" in html.read_text()
  assert machine_report.HUMAN_REPORT == "human/report/report.html"
