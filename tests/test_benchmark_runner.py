"""`python -m benchmarks` (benchmarks/run_all.py): registry modules run in subprocesses, rows
become one markdown table with ratios and goals, busy-machine rows are flagged unreliable,
a failing module becomes a 'failed' row instead of stopping the run."""

import json
import math

import pytest

from benchmarks import run_all

FAKE = '''
def run(quick):
  return [dict(path="fast thing", unit="img/s", cv_jax=30.0, peer=10.0, goal=2.0,
               command="fake.py", peer_what="a peer", notes="quick" if quick else "full"),
          dict(path="slow thing", unit="img/s", cv_jax=10.0, peer=10.0, goal=1.5,
               command="fake.py", peer_what="a peer", notes=""),
          dict(path="compile", unit="s", cv_jax=75.0, peer=None, goal_max=60.0,
               command="fake.py", peer_what="-", notes=""),
          dict(benchmark="old_style", method="maco", setting="64 px", unit_steps_per_s=4.0,
               peer="one unit per call", peer_unit_steps_per_s=2.0, ratio=2.0)]
'''


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
  (tmp_path / "fake_bench.py").write_text(FAKE)
  (tmp_path / "broken_bench.py").write_text("def run(quick):\n  raise RuntimeError('no weights')\n")
  monkeypatch.setenv("PYTHONPATH", str(tmp_path))
  monkeypatch.setattr(run_all, "REGISTRY", {"fake": "fake_bench", "broken": "broken_bench"})
  return tmp_path


def test_table_ratios_goals_and_failures(fake_registry, tmp_path, monkeypatch):
  loads = iter([0.2, 0.4, 0.3, 3.0])  # fake: idle around it; broken: busy after
  monkeypatch.setattr(run_all, "load_per_core", lambda: next(loads, 0.1))
  out = tmp_path / "res"
  rc = run_all.main(["--quick", "--out", str(out)])
  assert rc == 1  # one module failed
  md = (out / "benchmarks.md").read_text()
  assert "| fast thing | img/s | 30 | 10 | 3.00x | >= 2.0x met |" in md
  assert "| slow thing | img/s | 10 | 10 | 1.00x | >= 1.5x MISSED |" in md
  assert "| compile | s | 75 | - | - | <= 60 s MISSED |" in md
  assert "| old_style maco 64 px | unit-steps/s | 4 | 2 | 2.00x | - |" in md
  assert "one unit per call" in md
  assert "0.20 → 0.40 |" in md and "**unreliable**" in md
  broken = next(l for l in md.splitlines() if l.startswith("| broken"))
  assert "failed" in broken and "no weights" in broken and "**unreliable**" in broken
  data = json.loads((out / "benchmarks.json").read_text())
  assert data["quick"] is True
  fake = data["results"][0]
  assert fake["reliable"] and fake["rows"][0]["notes"] == "quick"
  assert not data["results"][1]["reliable"]


def test_unknown_benchmark_is_one_line_error(capsys):
  assert run_all.main(["--only", "nope"]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("benchmarks: error: unknown benchmark 'nope'")


def test_wait_for_idle_waits_for_the_load_to_fall(monkeypatch):
  loads = iter([1.5, 1.2, 0.4, 0.1])
  monkeypatch.setattr(run_all, "load_per_core", lambda: next(loads))
  monkeypatch.setattr(run_all.time, "sleep", lambda s: None)
  assert run_all.wait_for_idle(60, "x") == 0.4
  assert math.isnan(run_all.wait_for_idle(0, "x"))  # disabled: no reading taken
  assert next(loads) == 0.1  # the disabled call consumed nothing
