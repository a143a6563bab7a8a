"""Statistics of the human analysis beyond `cv_jax.experiment.stats` (spec §1.7, §3.9).

* `participant_sem2`: the paper's error bar, 2 * np.std(ddof=0) / sqrt(N) over per-participant
  values (UF l.503-517).
* `pair_kappas`: Cohen's kappa (the paper's formula, `experiment.stats.cohen_kappa`) over the
  paper's pairings (UH l.154-574): within a group all unordered pairs, between two groups all
  cross pairs, a group against a single rater (a baseline) each member against it; always within
  one image set. `kappa_entry` is one matrix entry: mean and 2 * std / sqrt(N_pairs) over all
  pairs of all image sets.
* `spearman`: Spearman's rho (Pearson correlation of average ranks), closed form.
* `quantile_bins`: values binned by quantiles of x (the paper's Fig. 16 uses 5 bins).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from cv_jax.experiment.stats import cohen_kappa, truncate100


def participant_sem2(values: Sequence[float]) -> float:
  """2 * std (ddof=0) / sqrt(N) of per-participant values; NaN for no values."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return float("nan")
  return float(2 * v.std() / math.sqrt(v.size))


def pair_kappas(a: Mapping[str, Sequence[bool]], b: Mapping[str, Sequence[bool]] | None = None
                ) -> list[float]:
  """Kappas of the paper's pairs of raters within one image set.

  Args:
    a: rater -> correctness vector (the same trials in the same order for all).
    b: a second group; None means the pairs within `a` (all unordered pairs).

  Returns:
    one kappa per pair (NaN where both raters are constant and equal).
  """
  if b is None:
    return [cohen_kappa(a[x], a[y]) for x, y in itertools.combinations(sorted(a), 2)]
  return [cohen_kappa(a[x], b[y]) for x in sorted(a) for y in sorted(b)]


def kappa_entry(kappas: Sequence[float]) -> dict[str, float | int | None]:
  """One matrix entry from the kappas of all pairs of all sets.

  Returns {"mean", "sem2", "mean100", "sem2_100", "n_pairs", "n_nan"}: mean and 2 SEM over the
  finite kappas (the paper's code has no NaN guard; `n_nan` says how many pairs were undefined),
  and both x100 truncated as the paper prints them.
  """
  k = np.asarray(kappas, np.float64)
  fin = k[np.isfinite(k)]
  if fin.size == 0:
    m = e = float("nan")
  else:
    m, e = float(fin.mean()), float(2 * fin.std() / math.sqrt(fin.size))
  return {"mean": m, "sem2": e, "mean100": truncate100(m), "sem2_100": truncate100(e),
          "n_pairs": int(k.size), "n_nan": int(k.size - fin.size)}


def _ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks, ties get the average rank."""
  order = np.argsort(x, kind="mergesort")
  r = np.empty(x.size, np.float64)
  r[order] = np.arange(1, x.size + 1)
  _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
  return (np.bincount(inv, weights=r) / counts)[inv]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rank correlation (average ranks for ties); NaN for < 2 points or no variance."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape:
    raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  if x.size < 2:
    return float("nan")
  rx, ry = _ranks(x), _ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  den = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
  return float((rx * ry).sum() / den) if den > 0 else float("nan")


def quantile_bins(x: Sequence[float], y: Sequence[float], n_bins: int = 5
                  ) -> list[dict[str, float | int]]:
  """y summarised in n_bins bins of equal count along x (edges = quantiles of x).

  Returns per bin {"x_lo", "x_hi", "x_mean", "mean", "std", "n"} (std with ddof=0).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  if x.size == 0:
    return []
  edges = np.quantile(x, np.linspace(0, 1, n_bins + 1))
  idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
  out = []
  for b in range(n_bins):
    sel = idx == b
    n = int(sel.sum())
    out.append({"x_lo": float(edges[b]), "x_hi": float(edges[b + 1]),
                "x_mean": float(x[sel].mean()) if n else float("nan"),
                "mean": float(y[sel].mean()) if n else float("nan"),
                "std": float(y[sel].std()) if n else float("nan"), "n": n})
  return out
