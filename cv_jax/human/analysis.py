"""From an export and its experiment to the paper's human results (spec §1.7, §3.9).

`analyze(export, doc)` returns one JSON-able dict (`results_human.json`):

* `counts`: per condition started / completed / abandoned / excluded (any, and per criterion) /
  duplicates (a second passing session of a task, dropped as the paper kept one per task) /
  included; `sessions`: per session the exclusion values, verdict and accuracy.
* `accuracy`: per condition the pooled fraction correct over the included participants' main
  (non-catch) trials, 2 SEM over per-participant accuracies (np.std, ddof 0), beside the paper's.
* `rt`, `confidence`: per condition, all / correct / wrong trials.
* `baselines`: Center, Center as published, Variance, Saliency scored on every included main
  row of all conditions (the paper's Fig. 4A), plus the paper's hard-coded Object baseline.
* `kappa`: the 8x8 Cohen's kappa matrix (five conditions, three baselines; Center as published
  as an extra row) with the paper's pairings per image set, mean and 2 SEM over all pairs,
  x100 truncated, the paper's matrix beside it, and the per-image-set means (Fig. 15).
* `per_layer`: accuracy per condition x branch x layer (Fig. 5A/B) and the catch trials per
  layer of the `passed_except_catch` participants (5C).
* `activation_difference`: accuracy per (condition, trial) against (max - min) / base, Spearman
  rho and 5 quantile bins per branch (Fig. 7/16).
* `example_units`: per-image-set accuracy of the easy / intermediate / difficult pool units
  (mixed5a, mixed4e, mixed3b; Fig. 14).
* `per_unit`: accuracy per unit x condition; `postings`: sessions per task.

Every statistic is computed from the rows here; `figures.py` draws them, `report.py` writes the
HTML. Trials are joined to the experiment by `trial_id`; exclusion is recomputed with the given
rules (default the paper's) unless `exclusion="stored"`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cv_jax.experiment.stats import cohen_kappa
from cv_jax.human import exclusion as exclusion_lib
from cv_jax.human import stats
from cv_jax.human.export_format import Export

CONDITIONS = ("synthetic", "natural", "mixed", "blur", "none")
BLOCKS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
          "mixed5a", "mixed5b")
KAPPA_BASELINES = ("center", "variance", "saliency")
BASELINES = ("center", "center_published", "variance", "saliency")
COLOURS = {"synthetic": (71, 120, 158), "natural": (255, 172, 116), "mixed": (48, 136, 31),
           "blur": (114, 82, 159), "none": (172, 167, 166)}
"""The paper's condition colours (UF l.27-32), RGB 0-255."""
LABELS = {"synthetic": "Synthetic", "natural": "Natural", "mixed": "Mixed", "blur": "Blur",
          "none": "None", "center": "Center", "center_published": "Center (as published)",
          "variance": "Variance", "saliency": "Saliency", "object": "Object"}

PAPER_ACCURACY = {"synthetic": {"low": 68, "high": 68, "sem2": 4},
                  "natural": {"low": 66, "high": 67, "sem2": 3},
                  "mixed": {"low": 66, "high": 67, "sem2": 3},
                  "blur": {"low": 66, "high": 67, "sem2": 3},
                  "none": {"low": 60, "high": 60, "sem2": 3}}
"""Paper Fig. 3A accuracy in % with 2 SEM (paper_spec §5.1; Natural, Mixed and Blur are given
together as 66-67 %)."""
PAPER_OBJECT_BASELINE = {"mean": 0.6344, "sem": 0.0064}
"""The paper's hard-coded Object baseline (cfv_main_figures.ipynb cell 38; SEM, not 2 SEM)."""
_PAPER_NAMES = ("synthetic", "natural", "mixed", "blur", "none", "center", "variance",
                "saliency")
_PAPER_KAPPA_ROWS = (
    ((14, 4), (22, 3), (22, 3), (21, 2), (15, 3), (6, 5), (12, 7), (27, 7)),
    ((22, 3), (33, 5), (30, 3), (28, 3), (25, 3), (1, 6), (21, 6), (40, 7)),
    ((22, 3), (30, 3), (29, 5), (26, 3), (23, 3), (-1, 6), (15, 6), (32, 5)),
    ((21, 2), (28, 3), (26, 3), (24, 5), (18, 3), (2, 6), (14, 6), (33, 6)),
    ((15, 3), (25, 3), (23, 3), (18, 3), (28, 6), (-4, 5), (18, 7), (32, 10)),
    ((6, 5), (1, 6), (-1, 6), (2, 6), (-4, 5), (100, 0), (0, 15), (-8, 12)),
    ((12, 7), (21, 6), (15, 6), (14, 6), (18, 7), (0, 15), (100, 0), (31, 12)),
    ((27, 7), (40, 7), (32, 5), (33, 6), (32, 10), (-8, 12), (31, 12), (100, 0)),
)
PAPER_KAPPA = {"names": list(_PAPER_NAMES),
               "mean100": [[m for m, _ in row] for row in _PAPER_KAPPA_ROWS],
               "sem2_100": [[e for _, e in row] for row in _PAPER_KAPPA_ROWS]}
"""Paper Fig. 4 Cohen's kappa x100 (mean, 2 SEM), paper_spec §5.3."""
EXAMPLE_UNITS = {"easy": ("mixed5a", "pool"), "intermediate": ("mixed4e", "pool"),
                 "difficult": ("mixed3b", "pool")}
"""The paper's appendix example units (Fig. 14): layer index 7, 6 and 1 of the pool branch."""


class AnalysisError(ValueError):
  """The export and the experiment do not fit together (the message says how)."""


def unit_position(unit: Mapping[str, Any]) -> tuple[str, str, int]:
  """(block, branch, layer index) of an experiment unit.

  Reads the first "block/branch:index" address among the unit's `branch`, `source` and `unit`
  fields (the pipeline writes `branch` = "mixed4a/pool:42", `unit` = "mixed4a_pre_relu:480").
  Units without one keep their `layer` field and branch "?", with the layer index -1.
  """
  for key in ("branch", "source", "unit"):
    block, sep, rest = str(unit.get(key) or "").partition("/")
    if sep and block in BLOCKS:
      return block, rest.split(":")[0], BLOCKS.index(block)
  return str(unit.get("layer") or unit.get("unit")), "?", -1


def unit_address(unit: Mapping[str, Any]) -> str:
  """The unit's "block/branch:index" address when it has one, else its `unit` field."""
  for key in ("branch", "source"):
    if "/" in str(unit.get(key) or ""):
      return str(unit[key])
  return str(unit.get("unit"))


def unit_key(unit: Mapping[str, Any]) -> tuple:
  """Sort key of units as the paper orders trials: layer, then branch (3x3 before pool)."""
  block, branch, li = unit_position(unit)
  return (li, block, {"1x1": 0, "3x3": 1, "5x5": 2, "pool": 3}.get(branch, 4), branch,
          str(unit.get("id")))


def _mean(xs) -> float:
  xs = [x for x in xs if x is not None]
  return float(np.mean(xs)) if xs else float("nan")


def _session_table(export: Export, rules: exclusion_lib.Rules, source: str):
  resp_by: dict[Any, list] = {}
  for r in export["responses"]:
    resp_by.setdefault(r["session_id"], []).append(r)
  ev_by: dict[Any, list] = {}
  for e in export["events"]:
    ev_by.setdefault(e["session_id"], []).append(e)
  rows = []
  for s in sorted(export["sessions"], key=lambda s: (s.get("completed_at") or math.inf, s["id"])):
    resp = exclusion_lib._dedupe(sorted(resp_by.get(s["id"], []),
                                        key=lambda r: r.get("t_server") or 0))
    ev = ev_by.get(s["id"], [])
    completed = s.get("state") == "complete" or any(e["kind"] == "submit" for e in ev)
    checks, passed = None, None
    if completed:
      if source == "stored" and s.get("exclusion_json"):
        checks = json.loads(s["exclusion_json"])
        passed = bool(s.get("passed"))
      else:
        checks, passed = exclusion_lib.evaluate(s["condition"], resp, ev, rules)
    rows.append({"session": s, "responses": resp, "completed": completed, "checks": checks,
                 "passed": passed})
  return rows


def analyze(export: Export, doc: Mapping[str, Any], *, rules: exclusion_lib.Rules | None = None,
            exclusion: str = "recompute", one_per_task: bool = True,
            confidence_labels: str = "shown") -> dict[str, Any]:
  """The paper's human results from an export and its experiment document (module docstring).

  Args:
    export: `export_format.read_export(...)`.
    doc: the `experiment.json` the study served.
    rules: exclusion rules (default: the paper's); used unless `exclusion="stored"`.
    exclusion: "recompute" (default) or "stored" (the sessions' `exclusion_json`/`passed`).
    one_per_task: keep only the first passing session of each task (the paper's design).
    confidence_labels: "shown" (the label under the clicked button, default) or "published"
      (the paper's stored field, `button mod 3 + 1`, inverted on the left).
  """
  if exclusion not in ("recompute", "stored"):
    raise AnalysisError(f"exclusion must be recompute or stored, got {exclusion!r}")
  if confidence_labels not in ("shown", "published"):
    raise AnalysisError(f"confidence_labels must be shown or published, got "
                        f"{confidence_labels!r}")
  rules = rules or exclusion_lib.Rules()
  trials = {t["id"]: t for t in doc["trials"]}
  units = {u["id"]: u for u in doc["units"]}
  sess_rows = _session_table(export, rules, exclusion)
  unknown = sorted({r["trial_id"] for s in sess_rows for r in s["responses"]
                    if r["trial_id"] not in trials})
  if unknown:
    raise AnalysisError(f"{len(unknown)} trial ids of the export are not in the experiment "
                        f"(e.g. {unknown[:3]}); pass the experiment the study served")
  # ---- included participants
  seen_tasks: set[str] = set()
  included, duplicates = [], []
  for s in sess_rows:
    if s["completed"] and s["passed"]:
      tid = s["session"]["task_id"]
      if one_per_task and tid in seen_tasks:
        duplicates.append(s)
        s["duplicate"] = True
        continue
      seen_tasks.add(tid)
      included.append(s)
      s["included"] = True
  conds = [c for c in CONDITIONS if any(s["session"]["condition"] == c for s in sess_rows)]
  conds += sorted({s["session"]["condition"] for s in sess_rows} - set(conds))
  # ---- counts
  counts = {}
  for c in conds + ["all"]:
    ss = [s for s in sess_rows if c == "all" or s["session"]["condition"] == c]
    done = [s for s in ss if s["completed"]]
    per = {k: sum(not s["checks"][k]["passed"] for s in done if k in s["checks"])
           for k in exclusion_lib.CRITERIA + ("row_variability_intended",)}
    counts[c] = {"started": len(ss), "completed": len(done), "abandoned": len(ss) - len(done),
                 "excluded": sum(not s["passed"] for s in done), "excluded_per_criterion": per,
                 "duplicates": sum(bool(s.get("duplicate")) for s in done),
                 "included": sum(bool(s.get("included")) for s in ss)}

  # ---- main rows
  def conf(r):
    if confidence_labels == "published":
      b = r.get("button_index")
      return None if b is None else b % 3 + 1
    return r.get("confidence")

  rows = []
  for s in included:
    for r in s["responses"]:
      if r["phase"] != "main":
        continue
      t = trials[r["trial_id"]]
      block, branch, li = unit_position(units[t["unit"]])
      rows.append({"session": s["session"]["id"], "condition": s["session"]["condition"],
                   "trial": t["id"], "unit": t["unit"], "image_set": t["image_set"],
                   "block": block, "branch": branch, "layer": li, "mode": r["mode"],
                   "correct": bool(r["correct"]), "rt_s": (r["rt_ms"] or 0) / 1000.0,
                   "confidence": conf(r), "entry_index": r["entry_index"]})
  main = [r for r in rows if r["mode"] != "catch_trial"]
  by_part: dict[Any, list] = {}
  for r in main:
    by_part.setdefault(r["session"], []).append(r)
  part_cond = {s["session"]["id"]: s["session"]["condition"] for s in included}

  # ---- accuracy, RT, confidence
  accuracy, rt, confidence = {}, {}, {}
  for c in conds:
    rs = [r for r in main if r["condition"] == c]
    parts = [p for p in by_part if part_cond[p] == c]
    pacc = [_mean(r["correct"] for r in by_part[p]) for p in parts]
    accuracy[c] = {"mean": _mean(r["correct"] for r in rs), "sem2": stats.participant_sem2(pacc),
                   "n_participants": len(parts), "n_trials": len(rs),
                   "paper": PAPER_ACCURACY.get(c)}
    rt[c], confidence[c] = {}, {}
    for subset, keep in (("all", lambda r: True), ("correct", lambda r: r["correct"]),
                         ("wrong", lambda r: not r["correct"])):
      sub = [r for r in rs if keep(r)]
      prt = [_mean(r["rt_s"] for r in by_part[p] if keep(r)) for p in parts]
      prt = [x for x in prt if np.isfinite(x)]
      rt[c][subset] = {"mean": _mean(r["rt_s"] for r in sub), "sem2": stats.participant_sem2(prt),
                       "n_trials": len(sub)}
      props, sems, sems_paper = [], [], []
      everyone = list(by_part)
      for v in (1, 2, 3):
        props.append(_mean(r["confidence"] == v for r in sub) if sub else float("nan"))
        pp = []
        pp_all = []
        for p in everyone:
          mine = [r for r in by_part[p] if keep(r)]
          val = _mean(r["confidence"] == v for r in mine) if mine else None
          if part_cond[p] == c and val is not None:
            pp.append(val)
          pp_all.append(val if part_cond[p] == c and val is not None else 0.0)
        sems.append(stats.participant_sem2(pp))
        sems_paper.append(stats.participant_sem2(pp_all))
      confidence[c][subset] = {"proportions": props, "sem2": sems, "sem2_paper": sems_paper,
                               "n_trials": len(sub)}

  # ---- baselines (Fig. 4A), over all included main rows of all conditions
  base_acc = {}
  for b in BASELINES:
    vals = [trials[r["trial"]]["baselines"][b]["correct"] for r in main
            if b in trials[r["trial"]].get("baselines", {})]
    if vals:
      v = np.asarray(vals, np.float64)
      base_acc[b] = {"mean": float(v.mean()), "sem2": float(2 * v.std() / math.sqrt(v.size)),
                     "n_rows": int(v.size)}
  machine = _machine_baselines(doc)

  # ---- kappa
  kappa = _kappa(main, included, doc, conds, units, trials)

  # ---- per layer and branch; catch per layer
  per_layer: dict[str, Any] = {"accuracy": {}, "catch": {}}
  for c in conds:
    per_layer["accuracy"][c] = {}
    for br in sorted({r["branch"] for r in main}):
      layers = sorted({r["layer"] for r in main if r["branch"] == br})
      per_layer["accuracy"][c][br] = {
          str(li): _mean(r["correct"] for r in main if r["condition"] == c and r["branch"] == br
                         and r["layer"] == li) for li in layers}
  pec = [s for s in sess_rows if s["completed"] and s["checks"] is not None
         and exclusion_lib.passed_except_catch(s["checks"])]
  catch_rows = []
  for s in pec:
    for r in s["responses"]:
      if r["phase"] == "main" and r["mode"] == "catch_trial":
        t = trials[r["trial_id"]]
        _, _, li = unit_position(units[t["unit"]])
        catch_rows.append((s["session"]["condition"], li, bool(r["correct"])))
  for c in conds:
    layers = sorted({li for cc, li, _ in catch_rows if cc == c})
    per_layer["catch"][c] = {str(li): _mean(ok for cc, lj, ok in catch_rows if cc == c and lj == li)
                             for li in layers}
  per_layer["catch_participants"] = len(pec)

  # ---- accuracy vs relative activation difference
  act = _activation_difference(main, trials, conds)

  # ---- example units, per unit
  examples = {}
  for name, (block, branch) in EXAMPLE_UNITS.items():
    uid = next((u["id"] for u in doc["units"] if u["role"] == "main"
                and unit_position(u)[:2] == (block, branch)), None)
    if uid is None:
      continue
    sets = sorted({r["image_set"] for r in main if r["unit"] == uid})
    examples[name] = {"unit": uid, "address": unit_address(units[uid]), "image_sets": sets,
                      "accuracy": {c: [_mean(r["correct"] for r in main if r["unit"] == uid
                                             and r["condition"] == c and r["image_set"] == b)
                                       for b in sets] for c in conds}}
  unit_order = [u["id"] for u in sorted((u for u in doc["units"] if u["role"] == "main"),
                                        key=unit_key)]
  per_unit = {u: {c: _mean(r["correct"] for r in main if r["unit"] == u and r["condition"] == c)
                  for c in conds} for u in unit_order if any(r["unit"] == u for r in main)}
  postings: dict[str, int] = {}
  for s in sess_rows:
    postings[s["session"]["task_id"]] = postings.get(s["session"]["task_id"], 0) + 1

  sessions = []
  for s in sess_rows:
    ch = s["checks"] or {}

    def val(k, ch=ch):
      return ch.get(k, {}).get("value")
    mine = by_part.get(s["session"]["id"], [])
    sessions.append({
        "session_id": s["session"]["id"], "participant_id": s["session"].get("participant_id"),
        "condition": s["session"]["condition"], "task_id": s["session"]["task_id"],
        "completed": s["completed"], "passed": s["passed"], "included": bool(s.get("included")),
        "duplicate": bool(s.get("duplicate")),
        "failed": sorted(k for k, v in ch.items() if v.get("applied", True) and not v["passed"]),
        "instruction_s": val("instruction_time"), "total_s": val("total_time"),
        "catch_ratio": val("catch_trials"), "practice_attempts": val("practice_attempts"),
        "n_left": ch.get("row_variability", {}).get("detail", {}).get("n_left"),
        "n_right": ch.get("row_variability", {}).get("detail", {}).get("n_right"),
        "accuracy": _mean(r["correct"] for r in mine) if mine else None,
        "mean_rt_s": _mean(r["rt_s"] for r in mine) if mine else None,
        "n_main": len(mine)})
  return {"schema": "cv_jax.human_results", "version": "1.0.0",
          "export": {k: export.manifest.get(k) for k in ("experiment_sha256", "exported_at",
                                                         "source", "counts")},
          "settings": {"rules": rules.to_dict(), "exclusion": exclusion,
                       "one_per_task": one_per_task, "confidence_labels": confidence_labels},
          "conditions": conds, "counts": counts, "accuracy": accuracy, "rt": rt,
          "confidence": confidence,
          "baselines": {"accuracy": base_acc, "machine": machine,
                        "object_paper": PAPER_OBJECT_BASELINE},
          "kappa": kappa, "per_layer": per_layer, "activation_difference": act,
          "example_units": examples, "per_unit": per_unit, "postings": postings,
          "sessions": sessions,
          "thresholds": {c: {"instruction_time_min_s": r.instruction_time_min_s,
                             "total_time_s": [r.total_time_min_s, r.total_time_max_s],
                             "catch_ratio_min": r.catch_ratio_min,
                             "practice_attempts_max": r.practice_attempts_max}
                         for c in conds for r in [rules.for_condition(c)]}}


def _machine_baselines(doc) -> dict[str, Any] | None:
  """The machine side's baseline accuracies over the experiment's trials (`results.json`)."""
  try:
    from cv_jax.experiment import report
    res = report.compute_results(doc)
  except ValueError:
    return None
  return {"accuracy": res["accuracy"], "kappa": res["kappa"]}


def _kappa(main, included, doc, conds, units, trials) -> dict[str, Any]:
  """The paper's kappa matrix over conditions and baselines, per image set then pooled."""
  order = sorted({r["unit"] for r in main}, key=lambda u: unit_key(units[u]))
  sets = sorted({r["image_set"] for r in main})
  grid = {(t["image_set"], t["unit"]): t for t in doc["trials"] if t["role"] == "main"}
  # per set: condition -> {participant: vector}
  vec: dict[int, dict[str, dict[Any, list]]] = {b: {c: {} for c in conds} for b in sets}
  by_part: dict[Any, dict] = {}
  for r in main:
    by_part.setdefault((r["session"], r["condition"], r["image_set"]), {})[r["unit"]] = r["correct"]
  for (p, c, b), answers in by_part.items():
    if all(u in answers for u in order):
      vec[b][c][p] = [answers[u] for u in order]
  names = list(conds) + [b for b in BASELINES if all(
      b in grid.get((s, u), {}).get("baselines", {}) for s in sets for u in order)]
  base_vec = {n: {s: [grid[(s, u)]["baselines"][n]["correct"] for u in order] for s in sets}
              for n in names if n in BASELINES}
  pairs: dict[str, list[float]] = {}
  per_set: dict[str, dict[str, float | None]] = {}
  for i, a in enumerate(names):
    for bname in names[i:]:
      key = f"{a}|{bname}"
      ks_all, ps = [], {}
      for s in sets:
        if a in BASELINES and bname in BASELINES:
          ks = [1.0] if a == bname else [cohen_kappa(base_vec[a][s], base_vec[bname][s])]
        elif a in BASELINES or bname in BASELINES:
          h, bl = (bname, a) if a in BASELINES else (a, bname)
          ks = stats.pair_kappas(vec[s][h], {bl: base_vec[bl][s]})
        elif a == bname:
          ks = stats.pair_kappas(vec[s][a])
        else:
          ks = stats.pair_kappas(vec[s][a], vec[s][bname])
        ks_all += ks
        fin = [k for k in ks if np.isfinite(k)]
        ps[str(s)] = float(np.mean(fin)) if fin else None
      pairs[key] = ks_all
      per_set[key] = ps
  n = len(names)
  entries = {k: stats.kappa_entry(v) for k, v in pairs.items()}
  mat = {f: [[None] * n for _ in range(n)] for f in ("mean", "sem2", "mean100", "sem2_100",
                                                      "n_pairs", "n_nan")}
  for i, a in enumerate(names):
    for j, b in enumerate(names):
      e = entries[f"{a}|{b}"] if i <= j else entries[f"{b}|{a}"]
      if a == b and a in BASELINES:
        e = {"mean": 1.0, "sem2": 0.0, "mean100": 100, "sem2_100": 0, "n_pairs": len(sets),
             "n_nan": 0}
      for f in mat:
        v = e[f]
        mat[f][i][j] = None if isinstance(v, float) and not math.isfinite(v) else v
  return {"names": names, "units": order, "image_sets": sets, **mat, "per_set": per_set,
          "paper": PAPER_KAPPA,
          "participants_per_set": {str(s): {c: len(vec[s][c]) for c in conds} for s in sets}}


def _activation_difference(main, trials, conds) -> dict[str, Any]:
  """Accuracy per (condition, trial) vs (max - min) / base, per branch: rho and quintile bins."""
  points: dict[tuple, list] = {}
  for r in main:
    points.setdefault((r["condition"], r["trial"], r["branch"]), []).append(r["correct"])
  out: dict[str, Any] = {}
  branches = sorted({k[2] for k in points})
  for br in branches:
    out[br] = {"points": {}, "spearman": {}, "bins": {}}
    xs_all, ys_all = [], []
    for c in conds:
      xs, ys = [], []
      for (cc, tid, b), vals in points.items():
        if cc != c or b != br:
          continue
        a = trials[tid].get("activations")
        if not a or not a.get("base"):
          continue
        xs.append((a["max"] - a["min"]) / a["base"])
        ys.append(float(np.mean(vals)))
      out[br]["points"][c] = {"x": xs, "y": ys}
      out[br]["spearman"][c] = stats.spearman(xs, ys) if len(xs) > 1 else None
      out[br]["bins"][c] = stats.quantile_bins(xs, ys, 5)
      xs_all += xs
      ys_all += ys
    out[br]["spearman_all"] = stats.spearman(xs_all, ys_all) if len(xs_all) > 1 else None
  return out


def summary_lines(results: Mapping[str, Any]) -> list[str]:
  """A short text summary (the CLI prints it)."""
  lines = []
  for c in results["conditions"]:
    a, n = results["accuracy"][c], results["counts"][c]
    lines.append(f"{LABELS.get(c, c):<10} accuracy {100 * a['mean']:.1f} ± "
                 f"{100 * a['sem2']:.1f} % "
                 f"({a['n_participants']} included of {n['started']} started)"
                 if a["n_participants"] else f"{LABELS.get(c, c):<10} no included participants")
  return lines
