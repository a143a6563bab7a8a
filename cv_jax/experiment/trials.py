"""Tasks (what each participant sees), catch trials and practice trials, as
in the paper's task files.

Paper design (CU `create_task_structure_json.py`, `create_task_structure_from_json.py`):
* Task k (1-based) of a condition uses image set (k-1) mod n_sets; it holds every main unit's
  trial of that image set once plus the catch trials, shuffled together (seed 1 for every
  condition, so task k has the same trial order in every condition); practice trials come first.
* The references of a trial are shuffled into display slots (`random.seed(task_index + i)`);
  in the Mixed condition the synthetic images fill the first slots, each group shuffled.
* The correct (max) query's side is randomised in the browser (`Math.seedrandom(task_name)`).

Here every random choice is drawn from NumPy generators seeded from explicit integers
(`np.random.default_rng([seed, ...])`), so the tasks are a pure function of (trials, seed):
trial order from [seed, 0, k], reference slots from [seed, 1, k, i, condition index], and the
max side from [seed, 2, k, i]. The order and the sides depend only on the task index, not on the
condition, as in the paper; the slots differ per condition.

Catch trials must have an obvious answer. The paper hand-picked catch units whose trials looked
obvious (j/t/z), and, in the None condition only, replaced the min query by the min query of an
unrelated unit (`create_task_structure_from_json.py` l.67-86). `assign_catch_swaps` implements
that replacement: mode "paper" swaps in the None condition only, mode "swap" in every condition
(the robust choice when catch units are not hand-checked: the max query then is almost the
"favourite image" shown beside it, while the min query is an unrelated photo).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cv_jax.experiment.schema import CONDITIONS, N_REFERENCES

CATCH_MODES = ("paper", "swap")


def unit_id(text: str) -> str:
  """A file-name-safe id of a unit address: "mixed4a/pool:42" -> "mixed4a-pool-42"."""
  s = re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-")
  if not s:
    raise ValueError(f"cannot make an id from unit {text!r}")
  return s


def trial_id(uid: str, image_set: int) -> str:
  """Id of the trial of unit `uid` at `image_set`."""
  return f"{uid}/set{int(image_set):02d}"


def reference_order(condition: str, rng: np.random.Generator, n_synthetic_mixed: int = 4,
                    n_references: Mapping[str, int] | None = None) -> list[int]:
  """A display-slot permutation of a condition's references (mixed: synthetic slots first)."""
  n = (n_references or N_REFERENCES)[condition]
  if condition == "mixed":
    ns = n_synthetic_mixed
    return [int(i) for i in rng.permutation(ns)] + [int(ns + i) for i in rng.permutation(n - ns)]
  return [int(i) for i in rng.permutation(n)]


def assign_catch_swaps(trials: Sequence[dict], mode: str = "paper", seed: int = 0) -> None:
  """Give each catch trial an unrelated min query (in place), per `mode`.

  The replacement is the min-occlusion query of another unit's trial, drawn with
  `np.random.default_rng([seed, 3, i])` for the i-th catch trial: from the other catch units'
  trials when there are any, else from any other unit's trial. Sets `trial["catch"] =
  {"conditions", "min", "min_source"}`.
  """
  if mode not in CATCH_MODES:
    raise ValueError(f"catch mode must be one of {CATCH_MODES}, got {mode!r}")
  catch = [t for t in trials if t["role"] == "catch"]
  for i, t in enumerate(catch):
    others = [o for o in catch if o["unit"] != t["unit"]]
    if not others:
      others = [o for o in trials if o["unit"] != t["unit"] and o["role"] != "practice"]
    if not others:
      raise ValueError(f"catch trial {t['id']} needs another unit's trial to borrow a min query "
                       "from; add units")
    src = others[int(np.random.default_rng([seed, 3, i]).integers(len(others)))]
    conds = ["none"] if mode == "paper" else list(CONDITIONS)
    t["catch"] = {"conditions": conds, "min": src["images"]["min"], "min_source": src["id"]}


def task_orders(trials: Sequence[Mapping[str, Any]], sets: Sequence[int], *, n_tasks: int,
                seed: int) -> list[tuple[int, int, list[tuple[str, str]]]]:
  """The trials of each task, in display order: every main unit once + the catch trials.

  Task k (1-based) uses image set sets[(k-1) mod len(sets)]; its (trial id, mode) pairs (mode
  "normal" or "catch_trial") are permuted with `np.random.default_rng([seed, 0, k])`, so the
  order depends only on the task index. Returns [(k, image set, [(trial id, mode), ...]), ...].
  """
  main_units = list(dict.fromkeys(t["unit"] for t in trials if t["role"] == "main"))
  if not main_units:
    raise ValueError("no main trials")
  main = {(t["unit"], t["image_set"]): t["id"] for t in trials if t["role"] == "main"}
  catch = [t["id"] for t in trials if t["role"] == "catch"]
  orders = []
  for k in range(1, n_tasks + 1):
    b = int(sets[(k - 1) % len(sets)])
    missing = [u for u in main_units if (u, b) not in main]
    if missing:
      raise ValueError(f"image set {b} has no trial for units {missing}")
    ids = [(main[(u, b)], "normal") for u in main_units] + [(c, "catch_trial") for c in catch]
    perm = np.random.default_rng([seed, 0, k]).permutation(len(ids))
    orders.append((k, b, [ids[i] for i in perm]))
  return orders


def assemble_tasks(conditions: Sequence[str],
                   orders: Sequence[tuple[int, int, Sequence[tuple[str, str]]]],
                   practice: Sequence[str], *, seed: int,
                   reference_order: Callable[[int, str, int, int], Any]) -> list[dict]:
  """Task dicts (schema `tasks` items), condition-major, from `task_orders`' output.

  Each entry gets `reference_order(condition index, condition, k, i)` (i = the entry's position;
  practice entries use 1000 + j) and a max-query side drawn from
  `np.random.default_rng([seed, 2, k, i])`, the same in every condition.
  """
  tasks = []
  for ci, c in enumerate(conditions):
    for k, b, ordered in orders:
      def entry(tid, mode, i):
        order = reference_order(ci, c, k, i)
        side = "left" if np.random.default_rng([seed, 2, k, i]).random() < 0.5 else "right"
        return {"trial": tid, "mode": mode, "reference_order": order, "max_side": side}
      pr = [entry(p, "practice", 1000 + j) for j, p in enumerate(practice)]
      tr = [entry(tid, mode, i) for i, (tid, mode) in enumerate(ordered)]
      tasks.append({"id": f"{c}/task_{k:03d}", "condition": c, "index": k, "image_set": b,
                    "seed": int(seed), "practice": pr, "trials": tr,
                    "catch_trial_idxs": [i + 1 for i, e in enumerate(tr)
                                         if e["mode"] == "catch_trial"]})
  return tasks


def make_tasks(trials: Sequence[dict], conditions: Sequence[str] = CONDITIONS, *,
               n_tasks: int, n_sets: int, seed: int = 1, n_synthetic_mixed: int = 4,
               practice: Sequence[str] = (), n_references: Mapping[str, int] | None = None
               ) -> list[dict]:
  """Tasks for each condition: every main unit once (at the task's image set) + catch trials.

  Args:
    trials: trial dicts (schema fields `id`, `unit`, `image_set`, `role`).
    conditions: the conditions to make tasks for.
    n_tasks: tasks per condition; task k uses image set (k-1) mod n_sets.
    n_sets: image sets used for main trials (0..n_sets-1).
    seed: the task seed (paper: 1).
    n_synthetic_mixed: synthetic references of the mixed condition (the first slots).
    practice: trial ids shown first, in this order, in every task.

  Returns:
    a list of task dicts (schema `tasks` items), condition-major.
  """
  if n_tasks < 1 or n_sets < 1:
    raise ValueError(f"n_tasks and n_sets must be positive, got {n_tasks}, {n_sets}")
  for c in conditions:
    if c not in CONDITIONS:
      raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
  by_id = {t["id"]: t for t in trials}
  for p in practice:
    if p not in by_id:
      raise ValueError(f"practice trial {p!r} is not among the trials")
  orders = task_orders(trials, range(n_sets), n_tasks=n_tasks, seed=seed)
  return assemble_tasks(
      conditions, orders, practice, seed=seed,
      reference_order=lambda ci, c, k, i: reference_order(
          c, np.random.default_rng([seed, 1, k, i, ci]), n_synthetic_mixed, n_references))


def shown_images(doc: Mapping[str, Any], task: Mapping[str, Any],
                 entry: Mapping[str, Any]) -> dict[str, Any]:
  """What a participant sees for one task entry: a consumer's reference implementation.

  Returns {"left", "right", "base", "references" (display order), "correct": "left"|"right"}.
  """
  trial = next(t for t in doc["trials"] if t["id"] == entry["trial"])
  c = task["condition"]
  mn = trial["images"]["min"]
  if trial.get("catch") and c in trial["catch"]["conditions"]:
    mn = trial["catch"]["min"]
  refs = trial["references"].get(c, [])
  shown = [refs[i] for i in entry["reference_order"]]
  mx = trial["images"]["max"]
  left, right = (mx, mn) if entry["max_side"] == "left" else (mn, mx)
  return {"left": left, "right": right, "base": trial["images"]["base"], "references": shown,
          "correct": entry["max_side"]}
