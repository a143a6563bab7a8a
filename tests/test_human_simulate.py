"""Simulated participants: planted accuracies and agreements come back out of the analysis,
each planted misbehaviour gives exactly the planted exclusions, the CLI writes an export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cv_jax.human import analysis, exclusion, export_format, simulate
from cv_jax.testing import human_doc


@pytest.fixture(scope="module")
def doc():
  return human_doc.make_doc(n_tasks=40, n_sets=10, seed=5)


def _analyze(doc, sim, **kw):
  return analysis.analyze(export_format.Export({}, sim.tables, []), doc, **kw)


def _entry(results, a, b):
  k = results["kappa"]
  i, j = k["names"].index(a), k["names"].index(b)
  return k["mean"][i][j], k["sem2"][i][j]


def test_planted_accuracy_recovered(doc):
  sim = simulate.simulate(doc, policy="fixed", seed=2)  # the paper's accuracy per condition
  res = _analyze(doc, sim)
  for c, p in simulate.PAPER_ACCURACY.items():
    a = res["accuracy"][c]
    assert a["n_participants"] == 40
    assert abs(a["mean"] - p) < 3 * a["sem2"] / 2, (c, a["mean"], p)
  res = _analyze(doc, simulate.simulate(doc, policy="fixed:0.8", seed=3,
                                        conditions=["synthetic"]))
  a = res["accuracy"]["synthetic"]
  assert abs(a["mean"] - 0.8) < 3 * a["sem2"] / 2


def test_oracle(doc):
  res = _analyze(doc, simulate.simulate(doc, policy="oracle", seed=0))
  for c in res["conditions"]:
    assert res["accuracy"][c]["mean"] == 1.0 and res["accuracy"][c]["sem2"] == 0.0
  assert res["counts"]["all"]["excluded"] == 0


def test_follow_saliency(doc):
  sim = simulate.simulate(doc, policy="baseline:saliency:0", seed=0)
  res = _analyze(doc, sim)
  main = [r for r in sim.tables["responses"] if r["phase"] == "main" and r["mode"] == "normal"]
  pooled = np.mean([r["correct"] for r in main])
  assert res["baselines"]["accuracy"]["saliency"]["mean"] == pytest.approx(pooled)
  for c in res["conditions"]:
    m, e = _entry(res, c, "saliency")
    assert m == pytest.approx(1.0) and e == pytest.approx(0.0, abs=1e-12)
    m, _ = _entry(res, c, c)  # identical raters
    assert m == pytest.approx(1.0)


def test_flipped_saliency_loses_agreement(doc):
  res = _analyze(doc, simulate.simulate(doc, policy="baseline:saliency:0.5", seed=0))
  m, e = _entry(res, "natural", "saliency")
  assert abs(m) < max(2 * e, 0.05)


def test_chance_kappas_near_zero(doc):
  res = _analyze(doc, simulate.simulate(doc, policy="chance", seed=4))
  for c in res["conditions"]:
    assert abs(res["accuracy"][c]["mean"] - 0.5) < 3 * res["accuracy"][c]["sem2"] / 2
    for other in res["kappa"]["names"]:
      m, e = _entry(res, c, other)
      assert abs(m) < 2 * e + 0.02, (c, other, m, e)  # within 4 SEM of 0


def test_irt_agrees_within_condition(doc):
  res = _analyze(doc, simulate.simulate(doc, policy="irt", seed=6))
  for c in res["conditions"]:
    m, e = _entry(res, c, c)
    assert m > 2 * e > 0, (c, m, e)


MIS = ["always_left@3", "skim@3", "slow@3", "catch_fail@3", "practice_fail:2@2",
       "practice_fail:5@3", "abandon_at:7@2", "reload_at:4@3", "duplicate_posts@3"]


def test_planted_misbehaviours_exact(doc):
  sim = simulate.simulate(doc, policy="fixed", seed=8, misbehave=MIS)
  truth = {t["session_id"]: t for t in sim.truth["participants"]}
  assert sum(t["misbehaviour"] is not None for t in truth.values()) == 25
  seen = set()
  for s in sim.tables["sessions"]:
    t = truth[s["id"]]
    if s["state"] != "complete":
      assert t["planted"] == ["abandoned"]
      continue
    resp = [r for r in sim.tables["responses"] if r["session_id"] == s["id"]]
    ev = [e for e in sim.tables["events"] if e["session_id"] == s["id"]]
    checks, passed = exclusion.evaluate(s["condition"], resp, ev)
    failed = sorted(k for k, v in checks.items() if not v["passed"])
    assert failed == sorted(t["planted"]), (t["misbehaviour"], t["condition"], failed)
    assert passed == (not [k for k in failed if k != "row_variability_intended"])
    assert json.loads(s["exclusion_json"]) == json.loads(json.dumps(checks))
    if t["misbehaviour"]:
      seen.add(t["misbehaviour"].split("@")[0])
  assert seen >= {"always_left", "skim", "slow", "catch_fail", "practice_fail:5",
                  "reload_at:4", "duplicate_posts"}
  # reloads: a second page load, and no trial stored twice
  for t in truth.values():
    if t["misbehaviour"] == "reload_at:4@3":
      loads = {e["page_load_id"] for e in sim.tables["events"] if e["session_id"] ==
               t["session_id"]}
      assert len(loads) == 2
  keys = [(r["session_id"], r["phase"], r["attempt"], r["entry_index"])
          for r in sim.tables["responses"]]
  assert len(keys) == len(set(keys))
  res = _analyze(doc, sim)
  n = res["counts"]["all"]
  assert n["abandoned"] == 2
  assert n["excluded_per_criterion"]["practice_attempts"] == sum(
      1 for t in truth.values() if "practice_attempts" in t["planted"])


def test_times_and_confidence(doc):
  rng = np.random.default_rng(0)
  rts = np.array([simulate.exgauss_ms(rng) for _ in range(4000)])
  assert rts.mean() == pytest.approx(1800 + 1500, rel=0.05)  # ex-Gaussian mean mu + tau
  sim = simulate.simulate(doc, policy="fixed", seed=1, conditions=["natural"])
  main = [r for r in sim.tables["responses"] if r["phase"] == "main"]
  c_ok = np.mean([r["confidence"] for r in main if r["correct"]])
  c_bad = np.mean([r["confidence"] for r in main if not r["correct"]])
  assert c_ok > c_bad + 0.3
  for r in main:  # the button shows the stored confidence on the chosen side
    assert export_format.CONFIDENCE_LABELS[r["button_index"]] == r["confidence"]
    assert (r["button_index"] < 3) == (r["chosen_side"] == "left")
    assert r["correct"] == (r["chosen_side"] == r["max_side"])
  again = simulate.simulate(doc, policy="fixed", seed=1, conditions=["natural"])
  assert again.tables == sim.tables


def test_parse_errors():
  for bad in ("baseline", "fixed:2", "irt:1", "oracle:1", "nope"):
    with pytest.raises(simulate.SimulationError, match="bad policy"):
      simulate.parse_policy(bad)
  for bad in ("skim", "skim:3@1", "abandon_at@2", "fly@1", "slow@x", "practice_fail:0@1"):
    with pytest.raises(simulate.SimulationError, match="bad misbehaviour"):
      simulate.parse_misbehaviours([bad])
  assert str(simulate.parse_misbehaviours(["slow@10%"])[0]) == "slow@10%"
  doc = human_doc.make_doc(n_tasks=2, n_sets=2)
  with pytest.raises(simulate.SimulationError, match="need 30 participants"):
    simulate.simulate(doc, misbehave=["skim@30"], conditions=["none"])


def test_cli_offline(tmp_path, doc):
  (tmp_path / "exp").mkdir()
  (tmp_path / "exp" / "experiment.json").write_text(json.dumps(doc))
  cmd = [sys.executable, "-m", "cv_jax.cli", "human", "simulate",
         f"--experiment={tmp_path / 'exp'}", "--offline", f"--out={tmp_path / 'e.zip'}",
         "--n=3", "--conditions=natural,none", "--misbehave=skim@1", "--policy=irt"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  exp = export_format.read_export(tmp_path / "e.zip")
  assert exp.manifest["counts"]["sessions"] == 6 and exp.manifest["source"] == "sim"
  assert exp.manifest["experiment_sha256"] == export_format.experiment_sha256(tmp_path / "exp")
  assert exp.manifest["simulation"]["policy"] == "irt:0.6:1.5"
  proc = subprocess.run(cmd[:5] + [f"--experiment={tmp_path / 'exp'}", "--offline"],
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip() == ("cv-jax human simulate: error: --offline needs --out=DIR (or a "
                                 ".zip path)")
