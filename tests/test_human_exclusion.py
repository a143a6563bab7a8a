"""Exclusion checks: the paper's thresholds at their boundaries (spec §3.13), per condition."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cv_jax.human import exclusion

T0 = 1_700_000_000_000.0  # epoch ms of run_start


def _session(instruction_s=30.0, total_s=300.0, catch_correct=(True, True, True),
             practice_attempts=1, sides=None, n_main=18, submit=True, clock_skew_s=0.0):
  """Responses + events of one session with the given times (seconds after run_start)."""
  resp = []
  t = T0 + instruction_s * 1000
  for a in range(1, practice_attempts + 1):
    for i in range(4):
      resp.append(dict(phase="practice", attempt=a, entry_index=i, mode="practice",
                       chosen_side="left", correct=a == practice_attempts, t_shown=t,
                       rt_ms=1000.0, t_choice=t + 1000, t_server=t + 1050))
      t += 2000
  modes = ["normal"] * n_main + ["catch_trial"] * len(catch_correct)
  correct = [True] * n_main + list(catch_correct)
  sides = sides or (["left", "right"] * 20)[:len(modes)]
  for i, (m, c, s) in enumerate(zip(modes, correct, sides)):
    resp.append(dict(phase="main", attempt=0, entry_index=i, mode=m, chosen_side=s, correct=c,
                     t_shown=t, rt_ms=1500.0, t_choice=t + 1500, t_server=t + 1520))
    t += 2000
  ev = [dict(kind="run_start", seq=1, t_client=T0, t_server=T0 + 30 + clock_skew_s * 1000)]
  if submit:
    ev.append(dict(kind="submit", seq=99, t_client=T0 + total_s * 1000,
                   t_server=T0 + total_s * 1000 + 40))
  return resp, ev


def test_paper_session_passes():
  checks, passed = exclusion.evaluate("synthetic", *_session())
  assert passed
  assert set(checks) == set(exclusion.CHECKS)
  assert checks["instruction_time"]["value"] == pytest.approx(30.0)
  assert checks["total_time"]["value"] == pytest.approx(300.0)
  assert checks["total_time"]["threshold"] == [90.0, 900.0]
  assert checks["catch_trials"]["value"] == 1.0
  assert checks["practice_attempts"]["value"] == 1
  for c in checks.values():
    assert set(c) >= {"passed", "value", "threshold"}


@pytest.mark.parametrize("instruction_s,ok", [(19.999, False), (20.0, True), (20.001, True)])
def test_instruction_time_boundary(instruction_s, ok):
  checks, passed = exclusion.evaluate("natural", *_session(instruction_s=instruction_s))
  assert checks["instruction_time"]["passed"] is ok and passed is ok


@pytest.mark.parametrize("total_s,ok", [(89.999, False), (90.0, True), (900.0, True),
                                        (900.001, False)])
def test_total_time_boundary(total_s, ok):
  checks, passed = exclusion.evaluate("blur", *_session(instruction_s=20.0, total_s=total_s))
  assert checks["total_time"]["passed"] is ok and passed is ok


@pytest.mark.parametrize("catch,ok", [((True, True, False), True), ((True, False, False), False),
                                      ((), True)])
def test_catch_ratio(catch, ok):
  checks, passed = exclusion.evaluate("mixed", *_session(catch_correct=catch))
  assert checks["catch_trials"]["passed"] is ok and passed is ok
  if catch:
    assert checks["catch_trials"]["value"] == pytest.approx(sum(catch) / 3)


@pytest.mark.parametrize("attempts,ok", [(5, True), (6, False)])
def test_practice_attempts(attempts, ok):
  checks, passed = exclusion.evaluate("synthetic", *_session(practice_attempts=attempts))
  assert checks["practice_attempts"]["value"] == attempts
  assert passed is ok


def test_none_condition_thresholds():
  # 15 s and 40 s pass in None, fail elsewhere.
  s = _session(instruction_s=15.0, total_s=40.0, practice_attempts=0)
  assert exclusion.evaluate("none", *s)[1]
  checks, passed = exclusion.evaluate("natural", *s)
  assert not passed
  assert not checks["instruction_time"]["passed"] and not checks["total_time"]["passed"]
  assert not exclusion.evaluate("none", *_session(instruction_s=14.999, practice_attempts=0))[1]
  assert not exclusion.evaluate("none", *_session(total_s=39.999, practice_attempts=0))[1]


def test_row_variability_published_noop_and_intended():
  s = _session(sides=["left"] * 21)
  checks, passed = exclusion.evaluate("synthetic", *s)
  assert passed  # the paper's check is a no-op
  assert checks["row_variability"]["passed"]
  assert not checks["row_variability_intended"]["passed"]
  assert checks["row_variability_intended"]["detail"] == {"n_left": 21, "n_right": 0}
  rules = exclusion.Rules(row_variability="intended")
  assert not exclusion.evaluate("synthetic", *s, rules=rules)[1]
  assert exclusion.evaluate("synthetic", *_session(), rules=rules)[1]


def test_configurable_and_overrides():
  rules = exclusion.Rules(instruction_time_min_s=10.0,
                          overrides={"none": {"instruction_time_min_s": 5.0}})
  assert exclusion.evaluate("natural", *_session(instruction_s=12.0), rules=rules)[1]
  assert exclusion.evaluate("none", *_session(instruction_s=6.0, total_s=100, practice_attempts=0),
                            rules=rules)[1]
  assert exclusion.Rules.from_dict(rules.to_dict()) == rules
  with pytest.raises(ValueError, match="unknown exclusion rule"):
    exclusion.Rules(overrides={"none": {"instruction_time": 3}})
  with pytest.raises(ValueError, match="row_variability"):
    exclusion.Rules(row_variability="strict")


def test_missing_submit_fails_and_server_clock_reported():
  checks, passed = exclusion.evaluate("natural", *_session(submit=False))
  assert not passed and checks["total_time"]["value"] is None
  checks, _ = exclusion.evaluate("natural", *_session(clock_skew_s=0.0))
  assert checks["clock_agreement"]["passed"] and not checks["clock_agreement"]["applied"]
  assert checks["total_time"]["detail"]["server_s"] == pytest.approx(300.0 + 0.01)
  skewed, passed = exclusion.evaluate("natural", *_session(clock_skew_s=-8.0))
  assert passed and not skewed["clock_agreement"]["passed"]  # flagged, not excluded
  assert skewed["clock_agreement"]["value"] == pytest.approx(8.0, abs=0.1)


def test_duplicates_count_once():
  resp, ev = _session(catch_correct=(True, True, False))
  dup = [dict(r, correct=True) for r in resp if r["mode"] == "catch_trial"]
  checks, _ = exclusion.evaluate("natural", resp + dup, ev)
  assert checks["catch_trials"]["value"] == pytest.approx(2 / 3)


def test_passed_except_catch():
  checks, passed = exclusion.evaluate("natural", *_session(instruction_s=16.0,
                                                            catch_correct=(False,) * 3))
  assert not passed and exclusion.passed_except_catch(checks)
  checks, _ = exclusion.evaluate("natural", *_session(instruction_s=14.0))
  assert not exclusion.passed_except_catch(checks)


def test_human_package_imports_no_jax():
  # Subcommand modules each define absl flags (--out, ...), so importing them all in one
  # process trips DuplicateFlagError after their imports ran; that is fine here.
  code = ("import sys, pkgutil, importlib, cv_jax.human as h\n"
          "from absl.flags import DuplicateFlagError\n"
          "for m in pkgutil.walk_packages(h.__path__, 'cv_jax.human.'):\n"
          "  try:\n"
          "    importlib.import_module(m.name)\n"
          "  except DuplicateFlagError:\n"
          "    pass\n"
          "bad = [m for m in sys.modules\n"
          "       if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax'))]\n"
          "assert not bad, bad\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
