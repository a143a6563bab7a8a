"""Agreement of MIS with human 2-AFC accuracy, and fitting alpha to it.

Human data come as a per-unit accuracy table (CSV: columns `unit`, `accuracy`, optional
`n_trials` and `model`; `unit` is "layer:channel" or "block/branch:index", resolved with the
model), the form the study server's 2-AFC export reduces to (fraction correct per unit).

* `spearman`: rank correlation with average ranks for ties (`cv_jax.human.stats.spearman`,
  re-exported here; checked against scipy in the tests).
* `agreement`: Spearman over the units both sides have, the per-model means of MIS and human
  accuracy, and (with several models) Spearman over model means, as the paper reports.
* `fit_alpha`: the alpha minimising the squared error between mean sigma(alpha * Delta) and
  human accuracy over units (the paper fits alpha on a subset of IMI units).
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from cv_jax.human.stats import spearman


def read_accuracy_table(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Rows {unit, accuracy, n_trials, model} of a per-unit human accuracy CSV."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    cols = set(reader.fieldnames or ())
    if not {"unit", "accuracy"} <= cols:
      raise ValueError(f"{path}: a human accuracy table needs columns 'unit' and 'accuracy' "
                       f"(optional 'n_trials', 'model'); found {sorted(cols)}")
    rows = []
    for i, r in enumerate(reader, start=2):
      try:
        acc = float(r["accuracy"])
      except ValueError:
        raise ValueError(f"{path} line {i}: accuracy {r['accuracy']!r} is not a number") from None
      if not 0.0 <= acc <= 1.0:
        raise ValueError(f"{path} line {i}: accuracy {acc} is not a fraction in [0, 1]")
      n = r.get("n_trials")
      rows.append(dict(unit=r["unit"].strip(), accuracy=acc,
                       n_trials=int(n) if n not in (None, "") else None,
                       model=(r.get("model") or "").strip() or None))
  if not rows:
    raise ValueError(f"{path}: no rows")
  return rows


def agreement(mis: Mapping[str, float], human: Sequence[Mapping[str, Any]],
              model_of: Mapping[str, str] | None = None) -> dict[str, Any]:
  """Per-unit Spearman between MIS and human accuracy, and model-level means.

  Args:
    mis: unit name -> MIS (or the alpha=None accuracy).
    human: rows {unit, accuracy, model?} with unit names as in `mis`.
    model_of: unit name -> model name for rows without a `model` (default: one model "model").
  """
  pairs = [(r, mis[r["unit"]]) for r in human if r["unit"] in mis and np.isfinite(mis[r["unit"]])]
  if not pairs:
    raise ValueError("no unit of the human table has an MIS score (unit names must match, e.g. "
                     "'mixed4a_pre_relu:12')")
  h = np.array([r["accuracy"] for r, _ in pairs])
  m = np.array([v for _, v in pairs])
  models: dict[str, list[int]] = {}
  for i, (r, _) in enumerate(pairs):
    name = r.get("model") or (model_of or {}).get(r["unit"]) or "model"
    models.setdefault(name, []).append(i)
  per_model = {name: dict(n_units=len(ix), mis_mean=float(m[ix].mean()),
                          human_mean=float(h[ix].mean()),
                          spearman=spearman(m[ix], h[ix]))
               for name, ix in models.items()}
  out = dict(n_units=len(pairs), n_unmatched=len(human) - len(pairs),
             spearman_units=spearman(m, h), mis_mean=float(m.mean()),
             human_mean=float(h.mean()), models=per_model)
  if len(per_model) > 1:
    out["spearman_models"] = spearman([v["mis_mean"] for v in per_model.values()],
                                      [v["human_mean"] for v in per_model.values()])
  return out


def fit_alpha(deltas: np.ndarray, human_accuracy: Sequence[float],
              bounds: tuple[float, float] = (1e-3, 1e4)) -> dict[str, float]:
  """The alpha minimising sum over units (mean_t sigma(alpha * Delta_ut) - h_u)^2.

  A log-spaced grid over `bounds` then golden-section refinement in log alpha.
  `deltas`: (U, N) per-task deltas of the units with human data, in the order of
  `human_accuracy`. Returns {alpha, rmse, spearman}.
  """
  d = np.asarray(deltas, np.float64)
  h = np.asarray(human_accuracy, np.float64)
  if d.ndim != 2 or d.shape[0] != h.size:
    raise ValueError(f"deltas {d.shape} must be (U, N) with U = {h.size} human accuracies")
  ok = np.isfinite(d).all(axis=1) & np.isfinite(h)
  d, h = d[ok], h[ok]
  if h.size < 1:
    raise ValueError("no units to fit alpha on")

  def loss(log_a: float) -> float:
    pred = (0.5 * (1 + np.tanh(0.5 * math.exp(log_a) * d))).mean(axis=1)
    return float(((pred - h) ** 2).sum())

  lo, hi = math.log(bounds[0]), math.log(bounds[1])
  grid = np.linspace(lo, hi, 241)
  vals = [loss(g) for g in grid]
  i = int(np.argmin(vals))
  a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
  g = (math.sqrt(5) - 1) / 2
  c, e = b - g * (b - a), a + g * (b - a)
  for _ in range(80):
    if loss(c) < loss(e):
      b = e
    else:
      a = c
    c, e = b - g * (b - a), a + g * (b - a)
  best = 0.5 * (a + b)
  alpha = math.exp(best)
  pred = (0.5 * (1 + np.tanh(0.5 * alpha * d))).mean(axis=1)
  return dict(alpha=alpha, rmse=math.sqrt(loss(best) / h.size), spearman=spearman(pred, h),
              n_units=int(h.size))
