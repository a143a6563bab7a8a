"""Exclusion of a participant's session: the paper's five checks, thresholds configurable.

The paper accepted a response only if all its checks passed (human_experiment_spec §1.5, CU
`tools/mturk/spawn_experiment.py`; thresholds from its `run_counterfactual_experiment_*.sh`):

* catch trials: fraction of the main block's catch trials answered correctly >= 0.6 (2 of 3);
  a session without catch trials passes;
* instruction time >= 20 s (None condition: 15 s); no maximum;
* total time within [90, 900] s (None: [40, 900] s);
* practice attempts <= 5 (a condition without practice passes with 0 attempts);
* row variability: as published a no-op (it passes whenever any trial exists); as intended at
  least one choice of each side. Both are always reported; `Rules.row_variability` picks which
  one enters the verdict ("paper", the default, or "intended").

Time definitions (spec §3.7, decision 1), on the client clock (epoch ms):
* start = the first `run_start` event (logged after the window check and the preload, as the
  paper's jsPsych clock started after the preload);
* instruction time = the first practice trial's `t_shown` (the first main trial's when there
  are no practice responses) - start;
* total time = the (first) `submit` event - start. Reload gaps count (wall time).
The same two times on the server clock (`t_server`) are reported in each check's `detail`, and
the check `clock_agreement` says whether the two clocks agree within `clock_tolerance_s`; it is
informational (a disagreement is an anomaly, not an exclusion).

`evaluate` returns `checks = {name: {"passed", "value", "threshold", "applied", "detail"}}`
and `passed` = all applied checks passed. `applied` is False for informational checks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHECKS = ("catch_trials", "instruction_time", "total_time", "practice_attempts",
          "row_variability", "row_variability_intended", "clock_agreement")
"""Names of the checks, in report order."""
CRITERIA = ("catch_trials", "instruction_time", "total_time", "practice_attempts",
            "row_variability")
"""The paper's five criteria (what the counts table reports excluded-per-criterion for)."""
ROW_VARIABILITY_MODES = ("paper", "intended")

_FIELDS = ("catch_ratio_min", "instruction_time_min_s", "total_time_min_s", "total_time_max_s",
           "practice_attempts_max", "row_variability", "row_variability_min", "clock_tolerance_s")


def _paper_overrides() -> dict[str, dict[str, Any]]:
  return {"none": {"instruction_time_min_s": 15.0, "total_time_min_s": 40.0}}


@dataclasses.dataclass(frozen=True)
class Rules:
  """Exclusion thresholds; defaults are the paper's, `overrides` per condition.

  Attributes:
    catch_ratio_min: minimum fraction of catch trials correct.
    instruction_time_min_s: minimum instruction time in seconds.
    total_time_min_s, total_time_max_s: allowed total time in seconds (inclusive).
    practice_attempts_max: maximum number of practice blocks.
    row_variability: "paper" (published no-op decides) or "intended" (>= min of each side).
    row_variability_min: minimum choices of each side for the intended rule.
    clock_tolerance_s: allowed client/server clock disagreement of either time (informational).
    overrides: condition -> {field: value}; the paper's None condition uses 15 s and [40, 900] s.
  """
  catch_ratio_min: float = 0.6
  instruction_time_min_s: float = 20.0
  total_time_min_s: float = 90.0
  total_time_max_s: float = 900.0
  practice_attempts_max: int = 5
  row_variability: str = "paper"
  row_variability_min: int = 1
  clock_tolerance_s: float = 5.0
  overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(
      default_factory=_paper_overrides)

  def __post_init__(self):
    if self.row_variability not in ROW_VARIABILITY_MODES:
      raise ValueError(f"row_variability must be one of {ROW_VARIABILITY_MODES}, got "
                       f"{self.row_variability!r}")
    for c, o in self.overrides.items():
      bad = sorted(set(o) - set(_FIELDS))
      if bad:
        raise ValueError(f"unknown exclusion rule(s) {bad} for condition {c!r}; "
                         f"known: {list(_FIELDS)}")

  def for_condition(self, condition: str) -> Rules:
    """These rules with the condition's overrides applied (and no overrides left)."""
    return dataclasses.replace(self, overrides={}, **dict(self.overrides.get(condition, {})))

  def to_dict(self) -> dict[str, Any]:
    """Plain-JSON form (for settings and results files)."""
    d = {f: getattr(self, f) for f in _FIELDS}
    d["overrides"] = {c: dict(o) for c, o in self.overrides.items()}
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any] | None) -> Rules:
    """Inverse of `to_dict`; missing fields keep the paper's defaults."""
    d = dict(d or {})
    unknown = sorted(set(d) - set(_FIELDS) - {"overrides"})
    if unknown:
      raise ValueError(f"unknown exclusion rule(s) {unknown}; known: {list(_FIELDS)}")
    if "overrides" in d:
      d["overrides"] = {c: dict(o) for c, o in d["overrides"].items()}
    return cls(**d)


def rules_2afc() -> Rules:
  """cv_jax's defaults for the 2-AFC exemplar task (`task` "exemplar_2afc").

  IMI excluded participants by catch trials, but its thresholds were not verified
  (successors_spec §4.1 [?]); these are cv_jax's choices for its tasks of one trial per unit plus
  catch trials: catch trials >= 0.8 correct (their answer is on screen), instruction time >= 15 s,
  total time within [60, 3600] s, at most 5 practice blocks, and the intended row-variability
  check (at least one choice of each side), no per-condition overrides. Override any field with
  `dataclasses.replace(rules_2afc(), ...)`.
  """
  return Rules(catch_ratio_min=0.8, instruction_time_min_s=15.0, total_time_min_s=60.0,
               total_time_max_s=3600.0, row_variability="intended", overrides={})


def rules_for(doc: Mapping[str, Any]) -> Rules:
  """The default rules of an experiment document: the paper's, or `rules_2afc` for 2-AFC."""
  return rules_2afc() if doc.get("task") == "exemplar_2afc" else Rules()


def _num(x) -> float | None:
  if x is None or x == "":
    return None
  x = float(x)
  return x if math.isfinite(x) else None


def _dedupe(responses: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """One response per (phase, attempt, entry_index), the first one (the server's rule)."""
  seen, out = set(), []
  for r in responses:
    key = (r.get("phase"), int(r.get("attempt") or 0), int(r["entry_index"]))
    if key not in seen:
      seen.add(key)
      out.append(r)
  return out


def _first_event(events: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
  hits = [e for e in events if e.get("kind") == kind and _num(e.get("t_client")) is not None]
  if not hits:
    return None
  return min(hits, key=lambda e: (_num(e["t_client"]), int(e.get("seq") or 0)))


def _shown(r: Mapping[str, Any]) -> float | None:
  """Client time the trial was shown: t_shown, else t_choice - rt_ms."""
  t = _num(r.get("t_shown"))
  if t is None and _num(r.get("t_choice")) is not None and _num(r.get("rt_ms")) is not None:
    t = _num(r["t_choice"]) - _num(r["rt_ms"])
  return t


def _server_shown(r: Mapping[str, Any]) -> float | None:
  """Server-clock estimate of the show time: arrival t_server - (t_choice - t_shown or rt)."""
  ts = _num(r.get("t_server"))
  if ts is None:
    return None
  tc, sh = _num(r.get("t_choice")), _shown(r)
  lag = (tc - sh) if tc is not None and sh is not None else (_num(r.get("rt_ms")) or 0.0)
  return ts - lag


def _seconds(a: float | None, b: float | None) -> float | None:
  return None if a is None or b is None else (b - a) / 1000.0


def times(responses: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
          ) -> dict[str, float | None]:
  """Instruction and total time in seconds on the client and the server clock (§3.7).

  Returns {"instruction_s", "total_s", "instruction_server_s", "total_server_s"}; a time whose
  events are missing is None (e.g. total time of a session that never submitted).
  """
  responses = _dedupe(responses)
  start, submit = _first_event(events, "run_start"), _first_event(events, "submit")
  practice = [r for r in responses if r.get("phase") == "practice" and _shown(r) is not None]
  main = [r for r in responses if r.get("phase") == "main" and _shown(r) is not None]
  first = min(practice or main, key=_shown) if (practice or main) else None
  t0 = _num(start["t_client"]) if start else None
  s0 = _num(start.get("t_server")) if start else None
  return {
      "instruction_s": _seconds(t0, _shown(first) if first else None),
      "total_s": _seconds(t0, _num(submit["t_client"]) if submit else None),
      "instruction_server_s": _seconds(s0, _server_shown(first) if first else None),
      "total_server_s": _seconds(s0, _num(submit.get("t_server")) if submit else None),
  }


def _check(passed: bool, value, threshold, applied: bool = True, **detail) -> dict[str, Any]:
  return {"passed": bool(passed), "value": value, "threshold": threshold, "applied": applied,
          "detail": detail}


def evaluate(condition: str, responses: Sequence[Mapping[str, Any]],
             events: Sequence[Mapping[str, Any]], rules: Rules | None = None
             ) -> tuple[dict[str, dict[str, Any]], bool]:
  """The paper's exclusion checks for one session.

  Args:
    condition: the session's condition (selects the per-condition thresholds).
    responses: the session's response rows (§3.5 columns: `phase` practice|main, `attempt`,
      `entry_index`, `mode` normal|catch_trial|practice, `chosen_side` left|right, `correct`,
      `t_shown`, `t_choice`, `rt_ms`, `t_server`). Duplicates of a key count once (the first).
    events: the session's event rows (§3.5: `kind`, `t_client`, `t_server`, `seq`); uses the
      first `run_start` and the first `submit`.
    rules: thresholds (default: the paper's).

  Returns:
    (checks, passed): checks = {name: {"passed", "value", "threshold", "applied", "detail"}},
    passed = every applied check passed. Values are seconds, a ratio or counts; a time that
    cannot be measured (missing events) is None and fails.
  """
  rules = (rules or Rules()).for_condition(condition)
  responses = _dedupe(responses)
  main = [r for r in responses if r.get("phase") == "main"]
  catch = [r for r in main if r.get("mode") == "catch_trial"]
  n_catch_ok = sum(bool(r.get("correct")) for r in catch)
  ratio = n_catch_ok / len(catch) if catch else None
  checks: dict[str, dict[str, Any]] = {}
  checks["catch_trials"] = _check(
      (not catch) or ratio >= rules.catch_ratio_min, ratio, rules.catch_ratio_min,
      n_correct=n_catch_ok, n=len(catch))
  t = times(responses, events)
  ins, tot = t["instruction_s"], t["total_s"]
  checks["instruction_time"] = _check(
      ins is not None and ins >= rules.instruction_time_min_s, ins,
      rules.instruction_time_min_s, server_s=t["instruction_server_s"])
  checks["total_time"] = _check(
      tot is not None and rules.total_time_min_s <= tot <= rules.total_time_max_s, tot,
      [rules.total_time_min_s, rules.total_time_max_s], server_s=t["total_server_s"])
  attempts = len({int(r.get("attempt") or 0) for r in responses if r.get("phase") == "practice"})
  checks["practice_attempts"] = _check(
      attempts <= rules.practice_attempts_max, attempts, rules.practice_attempts_max)
  n_left = sum(r.get("chosen_side") == "left" for r in main)
  n_right = sum(r.get("chosen_side") == "right" for r in main)
  intended = min(n_left, n_right) >= rules.row_variability_min
  checks["row_variability"] = _check(  # the published check: True whenever a trial exists
      len(main) > 0, min(n_left, n_right), rules.row_variability_min,
      n_left=n_left, n_right=n_right, mode="paper (no-op as published)")
  checks["row_variability_intended"] = _check(
      intended, min(n_left, n_right), rules.row_variability_min,
      applied=rules.row_variability == "intended", n_left=n_left, n_right=n_right)
  gaps = [abs(a - b) for a, b in ((ins, t["instruction_server_s"]), (tot, t["total_server_s"]))
          if a is not None and b is not None]
  gap = max(gaps) if gaps else None
  checks["clock_agreement"] = _check(
      gap is None or gap <= rules.clock_tolerance_s, gap, rules.clock_tolerance_s, applied=False)
  passed = all(c["passed"] for c in checks.values() if c["applied"])
  return checks, passed


def passed_except_catch(checks: Mapping[str, Mapping[str, Any]], *,
                        instruction_time_min_s: float = 15.0,
                        total_time_s: tuple[float, float] = (90.0, 900.0)) -> bool:
  """The paper's `passed_checks_except_catch` (CU `utils_data.process_checks`), for Fig. 5C.

  Instruction >= 15 s, total time in [90, 900] s and at least one left-side choice (the
  paper's "upper row", buttons 0-2), whatever the condition; catch trials are not looked at.
  """
  ins = checks["instruction_time"]["value"]
  tot = checks["total_time"]["value"]
  n_left = checks["row_variability"]["detail"]["n_left"]
  return (ins is not None and ins >= instruction_time_min_s and tot is not None
          and total_time_s[0] <= tot <= total_time_s[1] and n_left >= 1)
