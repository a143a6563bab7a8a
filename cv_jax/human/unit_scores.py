"""Per-unit human interpretability score of a 2-AFC study: the fraction of main trials correct.

IMI's human interpretability score of a unit is the proportion of correct answers on its
(non-catch) 2-AFC trials, over the participants who passed the exclusion checks. `unit_scores`
computes it per (unit, condition) from the export's `responses` and `sessions` tables and the
experiment document; `write_unit_csv` writes the per-unit table `cv-jax mis --human=` reads
(columns unit, accuracy, n_trials, model); `unit_figure` plots it per layer. Works for the
occlusion task's documents too (its trials also have units). Imports no JAX.
"""

from __future__ import annotations

import csv
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any


def unit_scores(doc: Mapping[str, Any], responses: Sequence[Mapping[str, Any]],
                sessions: Sequence[Mapping[str, Any]] | None = None, *,
                passed_only: bool = True) -> list[dict[str, Any]]:
  """Fraction correct per (unit, condition) on main, non-catch trials.

  Args:
    doc: the experiment document.
    responses: export `responses` rows (phase, mode, trial_id, correct, session_id).
    sessions: export `sessions` rows (id, condition, passed); needed for the condition and
      for `passed_only`. Without them every response counts, under condition None.
    passed_only: only sessions whose exclusion checks passed.

  Returns:
    rows {unit_id, unit ("layer:channel"), layer, channel, condition, n_trials, n_correct,
    accuracy, sem} sorted by condition, then the document's unit order; `sem` is the binomial
    standard error sqrt(p (1 - p) / n).
  """
  trial_unit = {t["id"]: t["unit"] for t in doc["trials"]}
  units = {u["id"]: u for u in doc["units"]}
  order = {u["id"]: i for i, u in enumerate(doc["units"])}
  sess = {s["id"]: s for s in sessions or ()}
  counts: dict[tuple[str | None, str], list[int]] = {}
  for r in responses:
    if r.get("phase") != "main" or r.get("mode") != "normal":
      continue
    s = sess.get(r["session_id"])
    if sessions is not None:
      if s is None or (passed_only and not s.get("passed")):
        continue
    uid = trial_unit.get(r["trial_id"])
    if uid is None:
      raise ValueError(f"response to unknown trial {r['trial_id']!r}: the export does not belong "
                       "to this experiment")
    c = counts.setdefault((s.get("condition") if s else None, uid), [0, 0])
    c[0] += 1
    c[1] += bool(r["correct"])
  rows = []
  for (cond, uid), (n, k) in sorted(counts.items(),
                                    key=lambda kv: (str(kv[0][0]), order[kv[0][1]])):
    p = k / n
    u = units[uid]
    rows.append({"unit_id": uid, "unit": u["unit"], "layer": u["layer"], "channel": u["channel"],
                 "condition": cond, "n_trials": n, "n_correct": k, "accuracy": p,
                 "sem": math.sqrt(p * (1 - p) / n)})
  return rows


def write_unit_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                   condition: str | None = None, model: str | None = None) -> pathlib.Path:
  """The per-unit table of one condition for `cv-jax mis --human=` (unit, accuracy, n_trials,
  model, condition, sem)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  sel = [r for r in rows if condition is None or r["condition"] == condition]
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["unit", "accuracy", "n_trials", "model", "condition", "sem"])
    for r in sel:
      w.writerow([r["unit"], f"{r['accuracy']:.6f}", r["n_trials"], model or "",
                  r["condition"] or "", f"{r['sem']:.6f}"])
  return path


def unit_figure(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> pathlib.Path:
  """Per-unit accuracy (± SEM) per condition, units grouped by layer, chance line at 0.5."""
  from matplotlib.figure import Figure
  path = pathlib.Path(path)
  conds = list(dict.fromkeys(r["condition"] for r in rows))
  units = list(dict.fromkeys(r["unit"] for r in rows))
  fig = Figure(figsize=(max(5.0, 0.35 * len(units) + 2), 3.2), dpi=100)
  ax = fig.subplots()
  width = 0.8 / max(1, len(conds))
  for ci, c in enumerate(conds):
    sel = {r["unit"]: r for r in rows if r["condition"] == c}
    xs = [i + (ci - (len(conds) - 1) / 2) * width for i, u in enumerate(units) if u in sel]
    ys = [sel[u]["accuracy"] for u in units if u in sel]
    es = [sel[u]["sem"] for u in units if u in sel]
    ax.bar(xs, ys, width, yerr=es, label=str(c), capsize=2)
  ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
  ax.set_ylim(0, 1)
  ax.set_ylabel("fraction correct")
  ax.set_xticks(range(len(units)), [u.replace("_pre_relu", "") for u in units], rotation=90,
                fontsize=6)
  ax.set_title("Human interpretability score per unit (2-AFC, passed participants)", fontsize=9)
  if len(conds) > 1:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)
  return path


def analyze_export(export_path: str | os.PathLike, doc: Mapping[str, Any],
                   out: str | os.PathLike) -> dict[str, Any]:
  """`cv-jax human analyze` for a 2-AFC exemplar experiment: per-unit scores of an export.

  Uses the stored exclusion verdicts (`sessions.passed`). Writes `unit_scores.json` (all rows
  and per-condition means), `human_accuracy_<condition>.csv` (for `cv-jax mis --human=`) and
  `unit_scores.png` into `out`; returns the JSON content.
  """
  import json

  from cv_jax.human import export_format
  exp = export_format.read_export(export_path)
  rows = unit_scores(doc, exp["responses"], exp["sessions"])
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  conds = list(dict.fromkeys(r["condition"] for r in rows))
  summary = {}
  for c in conds:
    sel = [r for r in rows if r["condition"] == c]
    n = sum(r["n_trials"] for r in sel)
    summary[str(c)] = {"n_units": len(sel), "n_trials": n,
                       "accuracy": sum(r["n_correct"] for r in sel) / n if n else None,
                       "mean_unit_accuracy": sum(r["accuracy"] for r in sel) / len(sel)}
    write_unit_csv(out / f"human_accuracy_{c}.csv", rows, c, model=doc["model"]["name"])
  sessions = exp["sessions"]
  result = {"task": doc.get("task"), "n_sessions": len(sessions),
            "n_passed": sum(bool(s.get("passed")) for s in sessions),
            "conditions": summary, "units": rows}
  (out / "unit_scores.json").write_text(json.dumps(result, indent=1) + "\n")
  if rows:
    unit_figure(rows, out / "unit_scores.png")
  return result
