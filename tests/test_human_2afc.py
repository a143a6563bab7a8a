"""The 2-AFC exemplar task on the human side: simulated participants recover a planted
accuracy through the per-unit human interpretability score; the score's CSV feeds
`cv_jax.mis` agreement; the study server's view of a 2-AFC entry keeps the secrets server-side.
Imports no JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cv_jax.human import exclusion, simulate, unit_scores
from cv_jax.testing.human_experiment_2afc import make_2afc


@pytest.fixture(scope="module")
def doc2(tmp_path_factory):
  root = tmp_path_factory.mktemp("afc")
  return json.loads(make_2afc(root, n_main=6, n_catch=2).read_text()), root


def test_simulated_participants_recover_planted_accuracy(doc2, tmp_path):
  doc, _ = doc2
  sim = simulate.simulate(doc, policy="fixed:0.8", n=150, conditions=["natural"], seed=5)
  sessions, responses = sim.tables["sessions"], sim.tables["responses"]
  assert all(json.loads(s["exclusion_json"])["catch_trials"]["threshold"] == 0.8
             for s in sessions)                                   # the 2-AFC defaults
  rows = unit_scores.unit_scores(doc, responses, sessions)
  assert {r["condition"] for r in rows} == {"natural"} and len(rows) == 6
  n = sum(r["n_trials"] for r in rows)
  acc = sum(r["n_correct"] for r in rows) / n
  sem = np.sqrt(0.8 * 0.2 / n)
  assert abs(acc - 0.8) < 3 * sem, (acc, sem)
  for r in rows:
    assert abs(r["accuracy"] - 0.8) < 4 * r["sem"] + 1e-9
  # Only passed sessions count; a session excluded by the rules is left out.
  passed = {s["id"] for s in sessions if s["passed"]}
  assert n == sum(1 for r in responses if r["phase"] == "main" and r["mode"] == "normal"
                  and r["session_id"] in passed)
  # The per-unit CSV is what `cv-jax mis --human` reads.
  from cv_jax import mis
  path = unit_scores.write_unit_csv(tmp_path / "h.csv", rows, "natural", model="synthetic")
  table = mis.read_accuracy_table(path)
  assert [t["unit"] for t in table] == [r["unit"] for r in rows]
  ag = mis.agreement({r["unit"]: r["accuracy"] for r in rows}, table)
  assert ag["spearman_units"] == pytest.approx(1.0)
  assert unit_scores.unit_figure(rows, tmp_path / "u.png").stat().st_size > 1000


def test_chance_and_oracle(doc2):
  doc, _ = doc2
  sim = simulate.simulate(doc, policy="oracle", n=10, conditions=["synthetic"], seed=1)
  rows = unit_scores.unit_scores(doc, sim.tables["responses"], sim.tables["sessions"],
                                 passed_only=False)
  assert all(r["accuracy"] == 1.0 for r in rows)
  sim = simulate.simulate(doc, policy="chance", n=200, conditions=["natural"], seed=2)
  rows = unit_scores.unit_scores(doc, sim.tables["responses"], sim.tables["sessions"],
                                 passed_only=False)
  n = sum(r["n_trials"] for r in rows)
  assert abs(sum(r["n_correct"] for r in rows) / n - 0.5) < 3 * np.sqrt(0.25 / n)


def test_server_view_of_a_2afc_entry(doc2):
  from cv_jax.human import stimuli
  doc, root = doc2
  exp = stimuli.load(root)
  task = exp.doc["tasks"][0]
  for entry in task["trials"]:
    v = stimuli.view(exp, task, entry)
    assert v["kind"] == "exemplar_2afc" and len(v["min_references"]) == 9
    d = stimuli.descriptor(v, "tok", "main", 0, 0)
    assert "max_side" not in d and "mode" not in d and "trial_id" not in d
    assert all(u.startswith("/s/tok/img/") for u in d["min_references"] + d["max_references"])
    trial = exp.trials[entry["trial"]]
    mx = exp.path_hash[trial["queries"]["max"]]
    assert v[v["max_side"]] == mx
  assert exclusion.rules_for(exp.doc).catch_ratio_min == 0.8
  assert exclusion.rules_for({"task": "occlusion"}).catch_ratio_min == 0.6


def test_analyze_command_on_a_2afc_export(doc2, tmp_path):
  import subprocess
  import sys

  import human_util as hu
  doc, root = doc2
  sim = simulate.simulate(doc, policy="fixed:0.7", n=20, seed=9)
  simulate.write_offline(sim, tmp_path / "export", None)
  r = subprocess.run([sys.executable, "-m", "cv_jax.cli", "human", "analyze",
                      f"--export={tmp_path / 'export'}", f"--experiment={root}",
                      f"--out={tmp_path / 'out'}"], capture_output=True, text=True,
                     env=hu.env(), cwd=hu.REPO, timeout=300)
  assert r.returncode == 0, r.stderr
  res = json.loads((tmp_path / "out" / "unit_scores.json").read_text())
  assert set(res["conditions"]) == {"natural", "synthetic"}
  rows = unit_scores.unit_scores(doc, sim.tables["responses"], sim.tables["sessions"])
  assert res["units"] == json.loads(json.dumps(rows))
  assert (tmp_path / "out" / "human_accuracy_natural.csv").exists()
