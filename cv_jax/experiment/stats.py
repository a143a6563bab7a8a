"""Accuracy and Cohen's kappa exactly as the paper computes them (its analysis code; Fig. 4).

* Accuracy: the mean of the per-trial correctness; the error is 2 SEM = 2 * std / sqrt(N) with
  NumPy's default population std (ddof=0), as the paper's figure code uses `array.std()`.
* Cohen's kappa (`utils_figures_helper.get_cohens_kappa`) is computed on *correctness*, not on
  the chosen side, for two raters over the same n trials (the paper: 18 units of one image set):
  p_o = fraction of trials where both are correct or both wrong, p_e = p1 p2 + (1-p1)(1-p2)
  with p_i the accuracy of rater i, kappa = (p_o - p_e) / (1 - p_e). This equals sklearn's
  `cohen_kappa_score` on the two boolean vectors.
  The paper has no guard for p_e = 1, which happens exactly when both raters are constant and
  equal (all correct or all wrong): kappa is then 0/0. We return NaN there (sklearn also
  returns NaN, with a warning) and the aggregate means below ignore nothing: a NaN image set
  makes the mean NaN, as in the paper's code; `kappa_table` reports how many sets were NaN.
* Baseline-vs-baseline entries: one kappa per image set, the matrix entry is the mean over the
  sets and its error 2 SEM (ddof=0); both are multiplied by 100 and truncated to int by
  `np.round(x * 100, 2).astype(int)` (truncation toward zero after rounding to 2 decimals).
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np


def mean_2sem(values) -> tuple[float, float]:
  """(mean, 2 * std / sqrt(N)) with population std (ddof=0), the paper's error bars."""
  v = np.asarray(values, dtype=np.float64).reshape(-1)
  if v.size == 0:
    raise ValueError("mean_2sem of an empty array")
  return float(v.mean()), float(2 * v.std() / math.sqrt(v.size))


def accuracy(correct) -> tuple[float, float]:
  """Fraction correct and its 2 SEM over trials (booleans or 0/1)."""
  return mean_2sem(np.asarray(correct, dtype=bool).astype(np.float64))


def cohen_kappa(a, b) -> float:
  """Cohen's kappa of two raters' correctness vectors (the paper's formula; NaN if p_e = 1)."""
  a = np.asarray(a, dtype=bool).reshape(-1)
  b = np.asarray(b, dtype=bool).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(f"raters have different numbers of trials: {a.size} vs {b.size}")
  if a.size == 0:
    raise ValueError("cohen_kappa of empty vectors")
  n = a.size
  p_o = np.sum(a == b) / n
  p1, p2 = a.sum() / n, b.sum() / n
  p_e = p1 * p2 + (1 - p1) * (1 - p2)
  if p_e == 1:
    return float("nan")
  return float((p_o - p_e) / (1 - p_e))


def truncate100(x: float) -> int | None:
  """The paper's display transform `np.round(x * 100, 2).astype(int)`; None for NaN."""
  if not np.isfinite(x):
    return None
  return int(np.round(np.float64(x) * 100, 2).astype(int))


def kappa_per_set(a, b) -> np.ndarray:
  """Kappa per image set: a, b are (n_sets, n_units) correctness arrays -> (n_sets,)."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"need two (n_sets, n_units) arrays of equal shape, got {a.shape}, {b.shape}")
  return np.array([cohen_kappa(x, y) for x, y in zip(a, b)])


def kappa_table(correct: Mapping[str, np.ndarray],
                names: Sequence[str] | None = None) -> dict[str, dict]:
  """Cohen's kappa between every pair of raters (baselines), the paper's way.

  Args:
    correct: rater name -> (n_sets, n_units) boolean correctness, the same trial order for all.
    names: the order of the rows (default: dict order).

  Returns:
    dict with `names`, `per_set` {"a|b": [kappa per set]}, `mean` and `sem2` (n, n) float
    matrices (diagonal = 1 and 0, as in the paper's figure), `mean100` and `sem2_100` the
    truncated x100 ints (None where NaN), and `nan_sets` {"a|b": count of NaN sets}.
  """
  names = list(correct) if names is None else list(names)
  n = len(names)
  mean = np.ones((n, n))
  sem2 = np.zeros((n, n))
  per_set, nan_sets = {}, {}
  for i, j in itertools.combinations(range(n), 2):
    k = kappa_per_set(correct[names[i]], correct[names[j]])
    m, e = (float(k.mean()), float(2 * k.std() / math.sqrt(k.size)))
    mean[i, j] = mean[j, i] = m
    sem2[i, j] = sem2[j, i] = e
    key = f"{names[i]}|{names[j]}"
    per_set[key] = [None if not np.isfinite(v) else float(v) for v in k]
    nan_sets[key] = int(np.sum(~np.isfinite(k)))
  return dict(names=names, per_set=per_set, mean=mean.tolist(), sem2=sem2.tolist(),
              mean100=[[truncate100(v) for v in row] for row in mean],
              sem2_100=[[truncate100(v) for v in row] for row in sem2], nan_sets=nan_sets)
