"""Simulated participants (human_experiment_spec §3.10): choices, times, misbehaviours.

A simulated participant takes one task of an experiment like a person would: instructions,
practice blocks until passed (none in the None condition, decision 4), the task's trials,
feedback, submit. Everything it does is drawn from `np.random.default_rng([seed, participant])`,
so a simulation is a pure function of (document, settings, seed).

Choice policies (on the main, non-catch trials; catch and practice trials are answered correctly
by an attentive participant):
* `oracle`: always correct; `chance`: a fair coin;
* `baseline:<name>:<p>`: the baseline's choice (a tie: a coin), flipped with probability p;
* `fixed` / `fixed:<p>`: correct with probability p, default per condition the paper's accuracy
  (synthetic .68, natural/mixed/blur .665, none .60);
* `irt` / `irt:<sd_ability>:<sd_difficulty>`: P(correct) = sigmoid(ability_i + condition_c -
  difficulty_u), ability ~ N(0, 0.6), unit difficulty ~ N(0, 1.5) centred over the main units
  (shared by everyone, so participants of a condition agree above chance: kappa ~ 0.2),
  condition_c = logit(the paper's accuracy) * sqrt(1 + pi var / 8) (var = the two variances),
  so that the expected accuracy is about the paper's.

Misbehaviours (`name[:arg]@count` or `@percent%`, each given to distinct participants):
`always_left`, `skim` (instructions shorter than the threshold), `slow` (a 950 s break, total
> 900 s), `catch_fail` (every catch trial wrong), `practice_fail:k` (k failed practice blocks
before passing), `abandon_at:i` (leaves after i main answers), `reload_at:i` (reloads the page
while main trial i is shown), `duplicate_posts` (every request sent twice; a server stores
them once).

Times: response times are ex-Gaussian (mu 1.8 s, sigma 0.4 s, tau 1.5 s), the Continue click
follows 350 ms + U(0.2, 0.8) s later; instructions take the threshold + 5 s + Exp(40 s) (capped);
confidence is 3/2/1 with probabilities .5/.35/.15 when correct and .25/.35/.4 when wrong.

`simulate(doc, ...)` returns the export tables (what the server would store: duplicates once)
and the ground truth; `main` is `cv-jax human simulate` (`--offline --out=DIR` writes an export;
`--url=` plays a running study server through `cv_jax.human.client`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cv_jax.experiment import exemplar_2afc as x2
from cv_jax.experiment import trials as trials_lib
from cv_jax.human import exclusion
from cv_jax.human.export_format import CONFIDENCE_LABELS

PAPER_ACCURACY = {"synthetic": 0.68, "natural": 0.665, "mixed": 0.665, "blur": 0.665,
                  "none": 0.60}
"""The paper-like default accuracy per condition (paper_spec §5.1)."""
POLICIES = ("oracle", "chance", "baseline", "fixed", "irt")
MISBEHAVIOURS = ("always_left", "skim", "slow", "catch_fail", "practice_fail", "abandon_at",
                 "reload_at", "duplicate_posts")
_WITH_ARG = {"practice_fail", "abandon_at", "reload_at"}
T0_MS = 1_767_225_600_000.0  # 2026-01-01T00:00:00Z, the simulated study's first page load


class SimulationError(ValueError):
  """Bad simulator settings (the message says what and how to fix)."""


@dataclasses.dataclass(frozen=True)
class Policy:
  """A parsed choice policy (see the module docstring)."""
  kind: str
  baseline: str | None = None
  flip: float = 0.0
  p: float | None = None
  sd_ability: float = 0.6
  sd_difficulty: float = 1.5

  def __str__(self) -> str:
    if self.kind == "baseline":
      return f"baseline:{self.baseline}:{self.flip:g}"
    if self.kind == "fixed" and self.p is not None:
      return f"fixed:{self.p:g}"
    if self.kind == "irt":
      return f"irt:{self.sd_ability:g}:{self.sd_difficulty:g}"
    return self.kind


def parse_policy(text: str) -> Policy:
  """`oracle`, `chance`, `baseline:<name>:<p>`, `fixed[:p]` or `irt[:sd_a:sd_d]` -> Policy."""
  parts = str(text).strip().split(":")
  kind = parts[0]
  try:
    if kind in ("oracle", "chance") and len(parts) == 1:
      return Policy(kind)
    if kind == "baseline" and len(parts) in (2, 3):
      flip = float(parts[2]) if len(parts) == 3 else 0.0
      if not 0 <= flip <= 1:
        raise ValueError
      return Policy(kind, baseline=parts[1], flip=flip)
    if kind == "fixed" and len(parts) in (1, 2):
      p = float(parts[1]) if len(parts) == 2 else None
      if p is not None and not 0 <= p <= 1:
        raise ValueError
      return Policy(kind, p=p)
    if kind == "irt" and len(parts) in (1, 3):
      if len(parts) == 3:
        return Policy(kind, sd_ability=float(parts[1]), sd_difficulty=float(parts[2]))
      return Policy(kind)
  except ValueError:
    pass
  raise SimulationError(f"bad policy {text!r}: use oracle, chance, baseline:<name>:<flip p in "
                        "[0,1]>, fixed, fixed:<p in [0,1]> or irt[:<sd ability>:<sd difficulty>]")


@dataclasses.dataclass(frozen=True)
class Misbehaviour:
  """One misbehaviour mixed into `count` (or `percent` %) of the participants."""
  name: str
  arg: int | None = None
  count: int | None = None
  percent: float | None = None

  def __str__(self) -> str:
    s = self.name + (f":{self.arg}" if self.arg is not None else "")
    return s + (f"@{self.count}" if self.count is not None else f"@{self.percent:g}%")


def parse_misbehaviours(items: Sequence[str]) -> list[Misbehaviour]:
  """Parse `name[:arg]@count` / `name[:arg]@percent%` items (see the module docstring)."""
  out = []
  for item in items:
    item = item.strip()
    if not item:
      continue
    what, _, amount = item.partition("@")
    name, _, arg = what.partition(":")
    ok = name in MISBEHAVIOURS and (bool(arg) == (name in _WITH_ARG)) and amount
    try:
      a = int(arg) if arg else None
      if amount.endswith("%"):
        count, percent = None, float(amount[:-1])
        ok = ok and 0 <= percent <= 100
      else:
        count, percent = int(amount), None
        ok = ok and count >= 0
      ok = ok and (a is None or a >= (0 if name != "practice_fail" else 1))
    except ValueError:
      ok = False
    if not ok:
      raise SimulationError(
          f"bad misbehaviour {item!r}: use NAME@COUNT or NAME@PERCENT% with NAME one of "
          f"{', '.join(n + (':<int>' if n in _WITH_ARG else '') for n in MISBEHAVIOURS)}")
    out.append(Misbehaviour(name, a, count, percent))
  return out


@dataclasses.dataclass
class Simulation:
  """A simulation's export tables (as a server would store them) and its ground truth."""
  tables: dict[str, list[dict[str, Any]]]
  truth: dict[str, Any]


# ------------------------------------------------------------------------------ helpers

def _sigmoid(x: float) -> float:
  return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
  p = min(max(p, 1e-6), 1 - 1e-6)
  return math.log(p / (1 - p))


def exgauss_ms(rng: np.random.Generator, mu: float = 1800.0, sigma: float = 400.0,
               tau: float = 1500.0) -> float:
  """One ex-Gaussian response time in ms (normal(mu, sigma) + exponential(tau)), >= 250 ms."""
  return float(max(250.0, rng.normal(mu, sigma) + rng.exponential(tau)))


def confidence(rng: np.random.Generator, correct: bool) -> int:
  """A confidence label 1-3, higher when correct."""
  p = (0.15, 0.35, 0.5) if correct else (0.4, 0.35, 0.25)
  return int(rng.choice([1, 2, 3], p=p))


def button_index(side: str, conf: int) -> int:
  """The button (0-5) under `side` whose shown label is `conf` (left 3 2 1, right 1 2 3)."""
  offset = 0 if side == "left" else 3
  return next(i for i in range(offset, offset + 3) if CONFIDENCE_LABELS[i] == conf)


def practice_block(n_entries: int, rng: np.random.Generator) -> list[int]:
  """The entries of one practice attempt: 1 of the first 3 ("obvious") + 3 of the rest.

  With fewer than 4 practice entries, all of them in order.
  """
  if n_entries < 4:
    return list(range(n_entries))
  obvious = min(3, n_entries - 3)
  first = int(rng.integers(obvious))
  rest = [int(i) for i in rng.permutation(np.arange(obvious, n_entries))[:3]]
  return [first] + rest


class _Hasher:
  """sha256 of a shown image: of the file's bytes under `root` when it exists, else of its path."""

  def __init__(self, root: pathlib.Path | None):
    self.root, self.cache = root, {}

  def __call__(self, rel: str) -> str:
    if rel not in self.cache:
      p = self.root / rel if self.root is not None else None
      data = p.read_bytes() if p is not None and p.is_file() else rel.encode()
      self.cache[rel] = hashlib.sha256(data).hexdigest()
    return self.cache[rel]


def assign_misbehaviours(n: int, mis: Sequence[Misbehaviour], seed: int
                         ) -> list[Misbehaviour | None]:
  """Give each misbehaviour to distinct participants (drawn with rng([seed, 7]))."""
  counts = [m.count if m.count is not None else round(n * m.percent / 100) for m in mis]
  if sum(counts) > n:
    raise SimulationError(f"the misbehaviours need {sum(counts)} participants, only {n} are "
                          "simulated; raise --n or lower the counts")
  order = np.random.default_rng([seed, 7]).permutation(n)
  out: list[Misbehaviour | None] = [None] * n
  k = 0
  for m, c in zip(mis, counts):
    for _ in range(c):
      out[int(order[k])] = m
      k += 1
  return out


# ------------------------------------------------------------------------------ one participant

def _choose(policy: Policy, rng: np.random.Generator, trial: Mapping[str, Any], condition: str,
            ability: float, difficulty: Mapping[str, float]) -> bool:
  """Whether the participant is correct on a main (non-catch) trial."""
  k = policy.kind
  if k == "oracle":
    return True
  if k == "chance":
    return bool(rng.random() < 0.5)
  if k == "baseline":
    b = trial.get("baselines", {}).get(policy.baseline)
    if b is None:
      raise SimulationError(f"trial {trial['id']} has no baseline {policy.baseline!r}; the "
                            f"experiment has {sorted(trial.get('baselines', {}))}")
    ch = b.get("choice")
    ok = bool(rng.random() < 0.5) if ch is None else ch == "max"
    return (not ok) if rng.random() < policy.flip else ok
  if k == "fixed":
    p = policy.p if policy.p is not None else PAPER_ACCURACY.get(condition, 0.65)
    return bool(rng.random() < p)
  if k == "irt":
    # condition effect scaled (probit approximation) so the mean accuracy is the paper's
    var = policy.sd_ability ** 2 + policy.sd_difficulty ** 2
    effect = _logit(PAPER_ACCURACY.get(condition, 0.65)) * math.sqrt(1 + math.pi * var / 8)
    eta = ability + effect - difficulty[trial["unit"]]
    return bool(rng.random() < _sigmoid(eta))
  raise SimulationError(f"unknown policy {k!r}")


def _participant(doc, task, p: int, *, policy: Policy, mis: Misbehaviour | None, rules, seed: int,
                 practice_in_none: bool, trials_by_id, difficulty, hasher, t_start: float):
  rng = np.random.default_rng([seed, p])
  cond = task["condition"]
  r_c = rules.for_condition(cond)
  name = mis.name if mis else None
  sid = p + 1
  ability = float(rng.normal(0, policy.sd_ability)) if policy.kind == "irt" else 0.0
  events, responses, draws = [], [], []
  seq = [0]
  load = [f"sim{p:05d}-0"]

  def event(kind, t, payload=None):
    events.append({"session_id": sid, "page_load_id": load[0], "seq": seq[0], "kind": kind,
                   "t_client": round(t, 3), "t_server": round(t + float(rng.uniform(15, 60)), 3),
                   "payload_json": json.dumps(payload or {}, sort_keys=True)})
    seq[0] += 1

  t = t_start
  event("page_load", t)
  t += float(rng.uniform(4000, 20000))  # reading the consent page
  event("consent", t)
  t += float(rng.uniform(1000, 6000))  # window check and preload
  t0 = t
  event("run_start", t0)
  event("instructions_start", t0 + 200)
  if name == "skim":
    ins_s = float(rng.uniform(2.0, max(2.5, r_c.instruction_time_min_s - 4)))
  else:
    ins_s = r_c.instruction_time_min_s + 5 + min(float(rng.exponential(40.0)), 150.0)
  event("instructions_end", t0 + ins_s * 1000 - 1500)
  event("fullscreen_enter", t0 + ins_s * 1000 - 800)
  t = t0 + ins_s * 1000
  practice = list(task.get("practice", [])) if (cond != "none" or practice_in_none) else []
  n_fail = mis.arg if name == "practice_fail" else 0
  attempt = 0
  while practice:
    attempt += 1
    block = practice_block(len(practice), np.random.default_rng([seed, 5, p, attempt]))
    draws.append({"session_id": sid, "attempt": attempt, "entries_json": json.dumps(block)})
    event("practice_block_start", t - 300, {"attempt": attempt})
    wrong = int(rng.integers(len(block))) if attempt <= n_fail else -1
    for j, e in enumerate(block):
      entry = practice[e]
      ok = j != wrong
      t = _answer(responses, rng, hasher, doc, task, entry, sid, "practice", attempt, e, ok,
                  None, t, load[0])
      t += float(rng.uniform(300, 900))  # reading the feedback
    event("practice_block_end", t, {"attempt": attempt, "passed": wrong < 0})
    t += float(rng.uniform(2000, 5000))  # "great" / "please repeat" page
    if wrong < 0:
      break
  abandon = mis.arg if name == "abandon_at" else None
  reload_at = mis.arg if name == "reload_at" else None
  main_correct = []
  entries = task["trials"]
  for i, entry in enumerate(entries):
    if abandon is not None and i >= abandon:
      break
    if name == "slow" and i == len(entries) // 2:
      event("visibility_hidden", t)
      t += 950_000
      event("visibility_visible", t)
    if reload_at is not None and i == reload_at:
      # trial i is on screen when the page reloads; the new page load resumes at trial i
      # (the run has started already, so no second run_start, as the study pages do)
      t += float(rng.uniform(5000, 15000))
      load[0] = f"sim{p:05d}-1"
      seq[0] = 0
      event("page_load", t)
      event("resume", t + 100, {"next_entry": i})
      t += float(rng.uniform(1500, 4000))
    trial = trials_by_id[entry["trial"]]
    if entry["mode"] == "catch_trial":
      ok = name != "catch_fail"
    else:
      ok = _choose(policy, rng, trial, cond, ability, difficulty)
    side = None
    if name == "always_left":
      side = "left"
      ok = entry["max_side"] == "left"
    t = _answer(responses, rng, hasher, doc, task, entry, sid, "main", 0, i, ok, side, t, load[0])
    if entry["mode"] != "catch_trial":
      main_correct.append(bool(ok))
  complete = abandon is None or abandon >= len(entries)
  state = "complete" if complete else "abandoned"
  if complete:
    t += float(rng.uniform(5000, 30000))
    needed = t0 + (r_c.total_time_min_s + 5) * 1000
    if name != "slow" and t < needed:  # a careful participant takes at least the minimum
      t = needed + float(rng.uniform(0, 3000))
    event("feedback", t, {"feedback": ""})
    t += float(rng.uniform(800, 2500))
    event("submit", t)
  checks, passed = exclusion.evaluate(cond, responses, events, rules) if complete else (None, None)
  planted = _planted(mis, cond, task, practice, r_c)
  session = {
      "id": sid, "token_sha256": hashlib.sha256(f"{seed}/{p}".encode()).hexdigest(),
      "participant_id": sid, "slot_id": None, "condition": cond, "task_id": task["id"],
      "state": state, "started_at": round(t_start, 3),
      "completed_at": round(events[-1]["t_server"], 3) if complete else None,
      "client_json": json.dumps({"ua": "cv_jax-sim", "window": [1280, 800]}),
      "completion_code": hashlib.sha256(f"code/{seed}/{p}".encode()).hexdigest()[:8].upper()
      if complete else None,
      "exclusion_json": json.dumps(checks, sort_keys=True) if checks is not None else None,
      "passed": passed}
  participant = {"id": sid, "study_id": 1, "external_id": f"sim-{p:05d}", "source": "sim",
                 "ids_json": json.dumps({"pid": f"sim-{p:05d}"}), "blocked": False,
                 "created_at": round(t_start, 3)}
  truth = {"participant": p, "session_id": sid, "condition": cond, "task_id": task["id"],
           "misbehaviour": str(mis) if mis else None, "planted": planted,
           "posts_per_request": 2 if name == "duplicate_posts" else 1,
           "ability": ability, "main_correct": main_correct,
           "accuracy": float(np.mean(main_correct)) if main_correct else None}
  return participant, session, responses, events, draws, truth


def _answer(responses, rng, hasher, doc, task, entry, sid, phase, attempt, index, ok, side, t,
            load_id) -> float:
  """Append one response (shown at t) and return the time after the Continue click."""
  if doc.get("task") == "exemplar_2afc":
    shown = x2.shown_2afc(doc, task, entry)
  else:
    shown = trials_lib.shown_images(doc, task, entry)
  mx = entry["max_side"]
  if side is None:
    side = mx if ok else ("left" if mx == "right" else "right")
  conf = confidence(rng, ok)
  rt = round(exgauss_ms(rng), 1)
  t_choice = t + rt
  t_cont = t_choice + 350 + float(rng.uniform(200, 800))
  responses.append({
      "session_id": sid, "phase": phase, "attempt": attempt, "entry_index": index,
      "trial_id": entry["trial"], "mode": entry["mode"], "max_side": mx,
      "shown_left": hasher(shown["left"]), "shown_right": hasher(shown["right"]),
      "chosen_side": side, "choice": "max" if ok else "min", "correct": bool(ok),
      "confidence": conf, "button_index": button_index(side, conf), "rt_ms": rt,
      "t_shown": round(t, 3), "t_choice": round(t_choice, 3), "t_continue": round(t_cont, 3),
      "page_load_id": load_id, "t_server": round(t_choice + float(rng.uniform(20, 80)), 3),
      "raw_json": None})
  return t_cont + float(rng.uniform(100, 400))


def _planted(mis: Misbehaviour | None, cond: str, task, practice, rules) -> list[str]:
  """The checks a misbehaviour must fail (or ["abandoned"] for a session never finished)."""
  if mis is None:
    return []
  n = mis.name
  if n == "skim":
    return ["instruction_time"]
  if n == "slow":
    return ["total_time"]
  if n == "catch_fail":
    return ["catch_trials"] if any(e["mode"] == "catch_trial" for e in task["trials"]) else []
  if n == "practice_fail":
    return ["practice_attempts"] if practice and mis.arg + 1 > rules.practice_attempts_max else []
  if n == "abandon_at":
    return ["abandoned"] if mis.arg < len(task["trials"]) else []
  if n == "always_left":
    out = []
    catch = [e for e in task["trials"] if e["mode"] == "catch_trial"]
    if catch and sum(e["max_side"] == "left" for e in catch) / len(catch) < rules.catch_ratio_min:
      out.append("catch_trials")
    if any(e["max_side"] == "right" for e in task["trials"]):
      out.append("row_variability_intended")
    return out
  return []


# ------------------------------------------------------------------------------ whole study

def simulate(doc: Mapping[str, Any], *, policy: str | Policy = "fixed", n: int | None = None,
             conditions: Sequence[str] | None = None, misbehave: Sequence[str] = (),
             seed: int = 0, rules: exclusion.Rules | None = None,
             practice_in_none: bool = False, root: str | os.PathLike | None = None) -> Simulation:
  """Simulate participants taking an experiment's tasks, as the study server would store them.

  Args:
    doc: the experiment document (`experiment.json`).
    policy: a policy string (module docstring) or a Policy.
    n: participants per condition (default: one per task). Participant j of a condition takes
      task j mod (tasks of the condition), in task order.
    conditions: the conditions to simulate (default: those with tasks).
    misbehave: misbehaviour items, `name[:arg]@count` or `@percent%`, over all participants.
    seed: the seed of everything.
    rules: exclusion rules for the stored `exclusion_json` (default: the paper's;
      `exclusion.rules_2afc()` for a 2-AFC exemplar experiment).
    practice_in_none: give the None condition practice blocks too (the paper did not).
    root: the experiment folder; shown images are hashed from its files when present.

  Returns:
    Simulation(tables, truth): the six export tables and the ground truth per participant.
  """
  policy = parse_policy(policy) if isinstance(policy, str) else policy
  mis = parse_misbehaviours(misbehave)
  rules = rules or exclusion.rules_for(doc)
  by_cond: dict[str, list] = {}
  for task in doc["tasks"]:
    by_cond.setdefault(task["condition"], []).append(task)
  conds = list(conditions) if conditions else list(by_cond)
  for c in conds:
    if c not in by_cond:
      raise SimulationError(f"the experiment has no tasks of condition {c!r}; it has "
                            f"{sorted(by_cond)}")
  for tasks in by_cond.values():
    tasks.sort(key=lambda t: t["index"])
  plan = []
  for c in conds:
    m = len(by_cond[c]) if n is None else int(n)
    if m < 1:
      raise SimulationError(f"--n must be at least 1, got {m}")
    plan += [by_cond[c][j % len(by_cond[c])] for j in range(m)]
  trials_by_id = {t["id"]: t for t in doc["trials"]}
  if policy.kind == "baseline":
    missing = [t["id"] for task in plan for e in task["trials"] if e["mode"] != "catch_trial"
               for t in [trials_by_id[e["trial"]]] if policy.baseline not in t.get("baselines", {})]
    if missing:
      raise SimulationError(f"policy {policy}: trial {missing[0]} has no {policy.baseline!r} "
                            "baseline (choose center, center_published, variance or saliency)")
  units = sorted({t["unit"] for t in doc["trials"]})
  drng = np.random.default_rng([seed, 11])
  raw = drng.normal(0, policy.sd_difficulty, len(units))
  main_units = {t["unit"] for t in doc["trials"] if t["role"] == "main"}
  centre = float(np.mean([v for u, v in zip(units, raw) if u in main_units] or [0.0]))
  difficulty = {u: float(v) - centre for u, v in zip(units, raw)}  # mean 0 over main units
  slot_of = {t["id"]: i + 1 for i, t in enumerate(doc["tasks"])}
  who = assign_misbehaviours(len(plan), mis, seed)
  hasher = _Hasher(pathlib.Path(root) if root is not None else None)
  tables = {k: [] for k in ("participants", "sessions", "responses", "events", "practice_draws",
                            "anomalies")}
  truth = []
  for p, task in enumerate(plan):
    part, sess, resp, ev, dr, tr = _participant(
        doc, task, p, policy=policy, mis=who[p], rules=rules, seed=seed,
        practice_in_none=practice_in_none, trials_by_id=trials_by_id, difficulty=difficulty,
        hasher=hasher, t_start=T0_MS + p * 120_000.0)
    sess["slot_id"] = slot_of[task["id"]]
    tables["participants"].append(part)
    tables["sessions"].append(sess)
    tables["responses"] += resp
    tables["events"] += ev
    tables["practice_draws"] += dr
    truth.append(tr)
  return Simulation(tables, {"policy": str(policy), "seed": seed, "n": n,
                             "misbehave": [str(m) for m in mis], "rules": rules.to_dict(),
                             "practice_in_none": practice_in_none, "participants": truth})


def write_offline(sim: Simulation, out: str | os.PathLike, experiment_sha256: str | None
                  ) -> pathlib.Path:
  """Write a simulation as an export (the ground truth goes into the manifest, `simulation`)."""
  from cv_jax.human import export_format
  return export_format.write_export(out, sim.tables, experiment_sha256=experiment_sha256,
                                    source="sim", extra={"simulation": sim.truth})
