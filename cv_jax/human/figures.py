"""The human analysis figures (spec §3.9), drawn from `analysis.analyze` results.

Each function takes the results dict and an output path, draws on a matplotlib `Figure` (no
pyplot, so the caller's backend is left alone), in the paper's condition colours, with the
paper's numbers beside ours where the paper has them, and returns the path of the PNG.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from cv_jax.human.analysis import COLOURS, LABELS

_DPI = 100
_BASE_COLOUR = "0.45"


def _colour(c: str):
  rgb = COLOURS.get(c)
  return tuple(v / 255 for v in rgb) if rgb else _BASE_COLOUR


def _fig(w: float, h: float, ncols: int = 1, nrows: int = 1):
  from matplotlib.figure import Figure
  fig = Figure(figsize=(w, h))
  axes = fig.subplots(nrows, ncols, squeeze=False)
  return fig, axes


def _save(fig, out) -> pathlib.Path:
  fig.tight_layout()
  fig.savefig(out, dpi=_DPI)
  return pathlib.Path(out)


def _legend(ax, **kw) -> None:
  if ax.get_legend_handles_labels()[0]:
    ax.legend(**kw)


def _nan(x):
  return np.nan if x is None else x


def accuracy(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 3A: accuracy per condition, 2 SEM over participants, chance line, the paper's values."""
  conds = results["conditions"]
  acc = results["accuracy"]
  fig, ax = _fig(5.2, 3.6)
  ax = ax[0, 0]
  x = np.arange(len(conds))
  ax.bar(x - 0.18, [100 * _nan(acc[c]["mean"]) for c in conds], 0.36,
         yerr=[100 * _nan(acc[c]["sem2"]) for c in conds], capsize=3,
         color=[_colour(c) for c in conds], label="this study")
  pm = [acc[c].get("paper") for c in conds]
  ax.bar(x + 0.18, [np.nan if p is None else (p["low"] + p["high"]) / 2 for p in pm], 0.36,
         yerr=[np.nan if p is None else p["sem2"] for p in pm], capsize=3,
         color=[_colour(c) for c in conds], alpha=0.45, hatch="//", edgecolor="0.3",
         label="paper (Fig. 3A)")
  for i, c in enumerate(conds):
    ax.text(i - 0.18, 2, f"n={acc[c]['n_participants']}", ha="center", fontsize=7, rotation=90,
            va="bottom", color="white")
  ax.axhline(50, color="k", ls="--", lw=1, label="chance")
  ax.set_xticks(x, [LABELS.get(c, c) for c in conds], fontsize=9)
  ax.set_ylabel("proportion correct (%)")
  ax.set_ylim(0, 100)
  _legend(ax, fontsize=7, loc="upper right", ncols=3)
  ax.set_title("Accuracy per reference condition (± 2 SEM over participants)", fontsize=9)
  return _save(fig, out)


def reaction_time(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 3B / 13: mean response time per condition for all, correct and wrong trials."""
  conds = results["conditions"]
  rt = results["rt"]
  fig, axes = _fig(9, 3.0, ncols=3)
  for ax, subset in zip(axes[0], ("all", "correct", "wrong")):
    ax.bar(range(len(conds)), [_nan(rt[c][subset]["mean"]) for c in conds],
           yerr=[_nan(rt[c][subset]["sem2"]) for c in conds], capsize=3,
           color=[_colour(c) for c in conds])
    ax.set_xticks(range(len(conds)), [LABELS.get(c, c) for c in conds], fontsize=8, rotation=20)
    ax.set_title(f"{subset} trials", fontsize=9)
  axes[0, 0].set_ylabel("response time (s)")
  return _save(fig, out)


def confidence(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 12: proportion of trials at each confidence level per condition (all/correct/wrong)."""
  conds = results["conditions"]
  cf = results["confidence"]
  fig, axes = _fig(10, 3.0, ncols=3)
  w = 0.8 / max(1, len(conds))
  for ax, subset in zip(axes[0], ("all", "correct", "wrong")):
    for i, c in enumerate(conds):
      d = cf[c][subset]
      ax.bar(np.arange(3) + (i - (len(conds) - 1) / 2) * w, [_nan(v) for v in d["proportions"]],
             w, yerr=[_nan(v) for v in d["sem2"]], capsize=2, color=_colour(c),
             label=LABELS.get(c, c))
    ax.set_xticks(range(3), ["1", "2", "3"])
    ax.set_xlabel("confidence")
    ax.set_ylim(0, 1)
    ax.set_title(f"{subset} trials", fontsize=9)
  axes[0, 0].set_ylabel("proportion of trials")
  _legend(axes[0, 2], fontsize=7)
  return _save(fig, out)


def baselines(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 4A: baseline accuracies on the participants' trials, the paper's Object baseline."""
  b = results["baselines"]["accuracy"]
  names = list(b)
  fig, ax = _fig(5.2, 3.4)
  ax = ax[0, 0]
  vals = [100 * b[n]["mean"] for n in names] + [100 * results["baselines"]["object_paper"]["mean"]]
  errs = [100 * b[n]["sem2"] for n in names] + [200 * results["baselines"]["object_paper"]["sem"]]
  cols = ["0.55"] * len(names) + ["0.8"]
  ax.bar(range(len(vals)), vals, yerr=errs, capsize=3, color=cols)
  hum = results["accuracy"]
  for c in results["conditions"]:
    if hum[c]["n_participants"]:
      ax.axhline(100 * hum[c]["mean"], color=_colour(c), lw=1.2, label=LABELS.get(c, c))
  ax.axhline(50, color="k", ls="--", lw=1)
  ax.set_xticks(range(len(vals)), [LABELS.get(n, n) for n in names] + ["Object (paper)"],
                rotation=20, fontsize=8)
  ax.set_ylim(0, 100)
  ax.set_ylabel("proportion correct (%)")
  _legend(ax, fontsize=7, title="humans", title_fontsize=7, loc="lower right")
  ax.set_title("Baselines on the participants' trials (± 2 SEM)", fontsize=9)
  return _save(fig, out)


def _matrix(ax, names, mean, sem, title):
  m = np.array([[np.nan if v is None else v for v in row] for row in mean], float)
  ax.imshow(m, cmap="RdBu_r", vmin=-60, vmax=60)
  ax.set_xticks(range(len(names)), [LABELS.get(n, n) for n in names], rotation=40, ha="right",
                fontsize=8)
  ax.set_yticks(range(len(names)), [LABELS.get(n, n) for n in names], fontsize=8)
  for i in range(len(names)):
    for j in range(len(names)):
      v = m[i, j]
      s = sem[i][j]
      txt = "–" if not np.isfinite(v) else f"{int(v)}\n±{'?' if s is None else s}"
      ax.text(j, i, txt, ha="center", va="center", fontsize=7,
              color="white" if np.isfinite(v) and abs(v) > 40 else "black")
  ax.set_title(title, fontsize=9)


def kappa(results: Mapping[str, Any], out, include_published: bool = False) -> pathlib.Path:
  """Fig. 4B: the kappa matrix x100 (truncated, ± 2 SEM), this study beside the paper's."""
  k = results["kappa"]
  keep = [i for i, n in enumerate(k["names"]) if include_published or n != "center_published"]
  names = [k["names"][i] for i in keep]
  mean = [[k["mean100"][i][j] for j in keep] for i in keep]
  sem = [[k["sem2_100"][i][j] for j in keep] for i in keep]
  p = k["paper"]
  fig, axes = _fig(12.5, 5.6, ncols=2)
  _matrix(axes[0, 0], names, mean, sem, "Cohen's kappa x100, this study")
  _matrix(axes[0, 1], p["names"], p["mean100"], p["sem2_100"], "paper (Fig. 4B)")
  return _save(fig, out)


def kappa_per_set(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 15: kappa per image set for within-condition and condition-vs-saliency pairs."""
  k = results["kappa"]
  conds = results["conditions"]
  sets = k["image_sets"]
  fig, axes = _fig(10, 3.2, ncols=2)
  for ax, (title, key) in zip(axes[0], (("within a condition", lambda c: f"{c}|{c}"),
                                        ("condition vs Saliency", lambda c: f"{c}|saliency"))):
    for i, c in enumerate(conds):
      ps = k["per_set"].get(key(c))
      if ps is None:
        continue
      y = [_nan(ps[str(s)]) for s in sets]
      x = np.arange(len(sets)) + (i - 2) * 0.06
      ax.plot(x, y, "o", color=_colour(c), ms=4, label=LABELS.get(c, c))
      j = k["names"].index(c)
      jj = k["names"].index(key(c).split("|")[1]) if key(c).split("|")[1] in k["names"] else None
      if jj is not None and k["mean"][j][jj] is not None:
        ax.axhline(k["mean"][j][jj], color=_colour(c), lw=1, alpha=0.7)
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set_xticks(range(len(sets)), [str(s) for s in sets], fontsize=8)
    ax.set_xlabel("image set")
    ax.set_title(f"kappa per image set, {title} (lines: mean)", fontsize=9)
  axes[0, 0].set_ylabel("Cohen's kappa")
  _legend(axes[0, 1], fontsize=7)
  return _save(fig, out)


def per_layer(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 5A/B/C: accuracy per layer for each branch and condition; catch trials per layer."""
  pl = results["per_layer"]
  conds = results["conditions"]
  branches = sorted({b for c in conds for b in pl["accuracy"].get(c, {})})
  fig, axes = _fig(4.2 * (len(branches) + 1), 3.2, ncols=len(branches) + 1)
  for ax, br in zip(axes[0], branches):
    for c in conds:
      d = pl["accuracy"][c].get(br, {})
      xs = sorted(int(k) for k in d)
      ax.plot([x + 1 for x in xs], [100 * _nan(d[str(x)]) for x in xs], "o-", color=_colour(c),
              label=LABELS.get(c, c), ms=4)
    ax.axhline(50, color="k", ls="--", lw=1)
    ax.set_ylim(0, 105)
    ax.set_xticks(range(1, 10))
    ax.set_xlabel("layer")
    ax.set_title(f"{br} branch", fontsize=9)
  ax = axes[0, -1]
  for c in conds:
    d = pl["catch"].get(c, {})
    xs = sorted(int(k) for k in d)
    ax.plot([x + 1 for x in xs], [100 * _nan(d[str(x)]) for x in xs], "s", color=_colour(c),
            label=LABELS.get(c, c), ms=5)
  ax.set_ylim(0, 105)
  ax.set_xticks(range(1, 10))
  ax.set_xlabel("layer")
  ax.set_title(f"catch trials ({pl['catch_participants']} participants)", fontsize=9)
  axes[0, 0].set_ylabel("proportion correct (%)")
  _legend(axes[0, 0], fontsize=7)
  return _save(fig, out)


def activation_difference(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 7/16: accuracy vs relative activation difference, Spearman rho, quintile bins."""
  ad = results["activation_difference"]
  conds = results["conditions"]
  branches = sorted(ad)
  fig, axes = _fig(5 * max(1, len(branches)), 3.6, ncols=max(1, len(branches)))
  for ax, br in zip(axes[0], branches):
    for c in conds:
      pts = ad[br]["points"].get(c)
      if not pts or not pts["x"]:
        continue
      rho = ad[br]["spearman"].get(c)
      ax.scatter(pts["x"], pts["y"], s=8, color=_colour(c), alpha=0.5,
                 label=f"{LABELS.get(c, c)} ρ={'nan' if rho is None else f'{rho:.2f}'}")
      bins = ad[br]["bins"].get(c, [])
      ax.errorbar([_nan(b["x_mean"]) for b in bins], [_nan(b["mean"]) for b in bins],
                  yerr=[_nan(b["std"]) for b in bins], color=_colour(c), lw=1.2, capsize=2)
    rho = ad[br].get("spearman_all")
    ax.set_title(f"{br} branch (all: ρ={'nan' if rho is None else f'{rho:.2f}'})", fontsize=9)
    ax.set_xlabel("(max − min) / base activation")
    ax.set_ylim(-0.05, 1.05)
    _legend(ax, fontsize=6)
  axes[0, 0].set_ylabel("proportion correct")
  return _save(fig, out)


def example_units(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 14: per-image-set accuracy of the easy / intermediate / difficult example units."""
  ex = results["example_units"]
  conds = results["conditions"]
  names = [n for n in ("easy", "intermediate", "difficult") if n in ex]
  fig, axes = _fig(4 * max(1, len(names)), 3.0, ncols=max(1, len(names)))
  for ax, n in zip(axes[0], names):
    d = ex[n]
    for i, c in enumerate(conds):
      y = [_nan(v) for v in d["accuracy"][c]]
      ax.plot(np.arange(len(d["image_sets"])) + (i - 2) * 0.06, y, "o", color=_colour(c),
              label=LABELS.get(c, c), ms=4)
    ax.set_xticks(range(len(d["image_sets"])), [str(s) for s in d["image_sets"]], fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("image set")
    ax.set_title(f"{n}: {d['address']}", fontsize=9)
  if names:
    axes[0, 0].set_ylabel("proportion correct")
    _legend(axes[0, 0], fontsize=7)
  return _save(fig, out)


def exclusion(results: Mapping[str, Any], out) -> pathlib.Path:
  """Fig. 17/18: instruction time, total time, catch ratio, practice attempts, left choices
  for included and excluded sessions with the thresholds; postings per task; per-participant
  accuracy."""
  ss = [s for s in results["sessions"] if s["completed"]]
  th = results["thresholds"]
  fig, axes = _fig(13, 6.2, ncols=4, nrows=2)
  panels = [("instruction_s", "instruction time (s)"), ("total_s", "total time (s)"),
            ("catch_ratio", "catch trials correct"), ("practice_attempts", "practice attempts"),
            ("n_left", "left-side choices")]
  for ax, (key, label) in zip(axes.ravel(), panels):
    vals = [s[key] for s in ss if s[key] is not None]
    if vals:
      lo, hi = min(vals), max(vals)
      bins = np.linspace(lo, hi if hi > lo else lo + 1, 21)
      for passed, col, name in ((True, "tab:green", "passed"), (False, "tab:red", "excluded")):
        v = [s[key] for s in ss if s[key] is not None and bool(s["passed"]) == passed]
        if v:
          ax.hist(v, bins=bins, color=col, alpha=0.6, label=f"{name} ({len(v)})")
    drawn = set()
    for c, t in th.items():
      lines = {"instruction_s": [t["instruction_time_min_s"]], "total_s": t["total_time_s"],
               "catch_ratio": [t["catch_ratio_min"]],
               "practice_attempts": [t["practice_attempts_max"] + 0.5]}.get(key, [])
      for x in lines:
        if x not in drawn:
          drawn.add(x)
          ax.axvline(x, color="k", ls="--", lw=1)
          if c == "none" and key in ("instruction_s", "total_s"):
            ax.text(x, ax.get_ylim()[1] * 0.9, " None", fontsize=7)
    ax.set_xlabel(label, fontsize=8)
    _legend(ax, fontsize=7)
  ax = axes[1, 1]
  counts = list(results["postings"].values())
  if counts:
    ax.hist(counts, bins=np.arange(0.5, max(counts) + 1.5), color="0.5")
  ax.set_xlabel("sessions per task", fontsize=8)
  ax = axes[1, 2]
  for i, c in enumerate(results["conditions"]):
    acc = [s["accuracy"] for s in results["sessions"] if s["included"] and s["condition"] == c
           and s["accuracy"] is not None]
    ax.plot(np.full(len(acc), i) + np.linspace(-0.2, 0.2, max(1, len(acc)))[:len(acc)], acc, "o",
            color=_colour(c), ms=3)
  ax.axhline(0.5, color="k", ls="--", lw=1)
  ax.set_xticks(range(len(results["conditions"])),
                [LABELS.get(c, c) for c in results["conditions"]], fontsize=8, rotation=20)
  ax.set_ylabel("accuracy per participant", fontsize=8)
  ax = axes[1, 3]
  n = results["counts"]["all"]
  crit = n["excluded_per_criterion"]
  labels = ["started", "completed", "abandoned", "excluded"] + [f"✗ {k}" for k in crit] + [
      "included"]
  vals = [n["started"], n["completed"], n["abandoned"], n["excluded"]] + list(crit.values()) + [
      n["included"]]
  ax.barh(range(len(vals)), vals, color="0.5")
  ax.set_yticks(range(len(vals)), labels, fontsize=7)
  ax.invert_yaxis()
  ax.set_title("sessions", fontsize=8)
  return _save(fig, out)


ALL = {"accuracy": accuracy, "rt": reaction_time, "confidence": confidence,
       "baselines": baselines, "kappa": kappa, "kappa_per_set": kappa_per_set,
       "per_layer": per_layer, "activation_difference": activation_difference,
       "example_units": example_units, "exclusion": exclusion}
"""Figure name -> function; `report.write` draws them all as <name>.png."""
