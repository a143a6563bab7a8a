"""Results (baseline accuracies, Cohen's kappa) and the HTML report of an experiment folder.

`compute_results(doc)` scores the baselines stored in the trials; `write_report(root, doc)`
writes `report.html` with one figure per unit (feature visualizations, natural references,
query + both occlusions + occlusion heat map, the baselines' choices), then the accuracy table,
the kappa table and a kappa heat map, each beside the paper's values (its Fig. 4).
"""

from __future__ import annotations

import html
import json
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from cv_jax.experiment import stats
from cv_jax.experiment.baselines import BASELINES, PAPER_KAPPA

HUMAN_REPORT = "human/report/report.html"
"""Where the human study's report goes, relative to the experiment folder (linked from ours)."""
LABELS = {"center": "Center", "center_published": "Center (as published)",
          "variance": "Variance", "saliency": "Saliency"}


def main_trial_matrix(doc: Mapping[str, Any], n_sets: int | None = None):
  """Main trials with baselines as a grid: (set ids, unit ids, {(set, unit): trial})."""
  trials = [t for t in doc["trials"] if t["role"] == "main" and t.get("baselines")]
  if n_sets is not None:
    trials = [t for t in trials if t["image_set"] < n_sets]
  sets = sorted({t["image_set"] for t in trials})
  units = list(dict.fromkeys(t["unit"] for t in trials))
  grid = {(t["image_set"], t["unit"]): t for t in trials}
  missing = [(s, u) for s in sets for u in units if (s, u) not in grid]
  if missing:
    raise ValueError(f"incomplete trial grid, missing (image set, unit) {missing[:5]}")
  return sets, units, grid


def compute_results(doc: Mapping[str, Any], n_sets: int | None = None) -> dict[str, Any]:
  """Baseline accuracies (mean, 2 SEM over trials) and the baseline kappa table.

  Kappa as in the paper: per image set over the units, then mean and 2 SEM over the sets.
  """
  sets, units, grid = main_trial_matrix(doc, n_sets)
  if not sets:
    raise ValueError("no main trials with baselines to score")
  names = [b for b in BASELINES if all(b in grid[(s, u)]["baselines"] for s in sets
                                       for u in units)]
  correct = {b: np.array([[grid[(s, u)]["baselines"][b]["correct"] for u in units]
                          for s in sets], bool) for b in names}
  acc = {}
  for b in names:
    m, e = stats.accuracy(correct[b])
    acc[b] = {"mean": m, "sem2": e, "n": int(correct[b].size)}
  # The model's own trials are correct by construction; report per-unit relative differences.
  rel = []
  for t in grid.values():
    a = t["activations"]
    rel.append((a["max"] - a["min"]) / a["base"] if a["base"] else float("nan"))
  kappa = stats.kappa_table(correct, names) if len(names) > 1 else None
  paper = {f"{a}|{b}": list(v) for (a, b), v in PAPER_KAPPA.items()}
  return {"n_sets": len(sets), "n_units": len(units), "image_sets": sets, "units": units,
          "accuracy": acc, "kappa": kappa, "paper_kappa": paper,
          "relative_activation_difference": {"median": float(np.nanmedian(rel)),
                                             "values": [float(x) for x in rel]}}


# ------------------------------------------------------------------------------ figures

def _load(root: pathlib.Path, rel: str) -> np.ndarray:
  from PIL import Image
  with Image.open(root / rel) as im:
    return np.asarray(im.convert("RGB"))


def unit_figure(root: pathlib.Path, doc: Mapping[str, Any], unit: Mapping[str, Any],
                trial: Mapping[str, Any], out: pathlib.Path) -> pathlib.Path:
  """One unit: synthetic refs, natural refs, query + occlusions + heat map, baseline choices."""
  from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
  from matplotlib.patches import Rectangle

  syn = list(unit.get("synthetic", {}).get("9", []))[:9]
  nat = trial["references"].get("natural", [])[:9]
  blur = trial["references"].get("blur", [])[:9]
  rows = [("synthetic", syn), ("natural", nat), ("blur", blur)]
  rows = [(n, r) for n, r in rows if r]
  ncol = 9
  fig = Figure(figsize=(ncol * 1.2, (len(rows) + 1) * 1.4 + 0.3))
  axes = fig.subplots(len(rows) + 1, ncol)
  axes = np.atleast_2d(axes)
  for ax in axes.ravel():
    ax.axis("off")
  for r, (name, paths) in enumerate(rows):
    for c, p in enumerate(paths):
      axes[r, c].imshow(_load(root, p))
    axes[r, 0].set_title(name, fontsize=8, loc="left")
  r = len(rows)
  size = trial["occlusion"]["size"]
  base = _load(root, trial["images"]["base"])
  axes[r, 0].imshow(base)
  axes[r, 0].set_title("query", fontsize=8, loc="left")
  for key, col, colour in (("min", 1, "tab:red"), ("max", 2, "tab:green")):
    axes[r, col].imshow(_load(root, trial["images"][key]))
    act = trial["activations"][key]
    axes[r, col].set_title(f"{key} {act:.3g}" + (" (correct)" if key == "max" else ""),
                           fontsize=7, loc="left")
    rr, cc = trial["occlusion"][key]
    axes[r, 0].add_patch(Rectangle((cc, rr), size, size, fill=False, color=colour, lw=1))
  if trial["occlusion"].get("map"):
    m = np.load(root / trial["occlusion"]["map"])
    ax = axes[r, 3]
    ax.imshow(m, cmap="viridis")
    ax.set_title(f"occlusion map\nbase {trial['activations']['base']:.3g}", fontsize=7,
                 loc="left")
  lines = []
  for b, v in trial.get("baselines", {}).items():
    ch = v.get("choice")
    lines.append(f"{LABELS.get(b, b):<22} picks {ch or 'tie'}: "
                 f"{'correct' if v['correct'] else 'wrong'}")
  if lines:
    axes[r, 4].text(0.05, 0.5, "\n".join(lines), fontsize=8, va="center", family="monospace",
                    transform=axes[r, 4].transAxes, clip_on=False)
  fig.suptitle(f"{unit['branch'] or unit['unit']}  ({unit['unit']}), image set "
               f"{trial['image_set']}", fontsize=9, x=0.01, ha="left")
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.3)
  fig.savefig(out, dpi=90)
  return out


def kappa_figure(results: Mapping[str, Any], out: pathlib.Path) -> pathlib.Path:
  """Heat map of our baseline kappas (x100, truncated) beside the paper's three values."""
  from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

  k = results["kappa"]
  names = k["names"]
  mean = np.array([[np.nan if v is None else v for v in row] for row in k["mean100"]], float)
  sem = k["sem2_100"]
  paper_names = ["center", "variance", "saliency"]
  pm = np.full((3, 3), np.nan)
  ps = np.zeros((3, 3), int)
  for i, a in enumerate(paper_names):
    pm[i, i] = 100
  for (a, b), (m, e) in PAPER_KAPPA.items():
    i, j = paper_names.index(a), paper_names.index(b)
    pm[i, j] = pm[j, i] = m
    ps[i, j] = ps[j, i] = e
  fig = Figure(figsize=(9.5, 4.2))
  axes = fig.subplots(1, 2)
  for ax, m, s, ns, title in ((axes[0], mean, sem, names, "this run"),
                              (axes[1], pm, ps.tolist(), paper_names, "paper (Fig. 4)")):
    ax.imshow(m, cmap="RdBu_r", vmin=-100, vmax=100)
    ax.set_xticks(range(len(ns)), [LABELS[n] for n in ns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(ns)), [LABELS[n] for n in ns], fontsize=8)
    for i in range(len(ns)):
      for j in range(len(ns)):
        txt = "nan" if not np.isfinite(m[i, j]) else f"{int(m[i, j])}\n±{s[i][j]}"
        dark = np.isfinite(m[i, j]) and abs(m[i, j]) > 60
        ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_title(f"Cohen's kappa x100, {title}", fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=90)
  return out


def accuracy_figure(results: Mapping[str, Any], out: pathlib.Path) -> pathlib.Path:
  """Bar chart of baseline accuracies with 2 SEM error bars."""
  from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

  acc = results["accuracy"]
  names = list(acc)
  fig = Figure(figsize=(5, 3))
  ax = fig.subplots()
  ax.bar(range(len(names)), [acc[n]["mean"] * 100 for n in names],
         yerr=[acc[n]["sem2"] * 100 for n in names], color="tab:gray", capsize=3)
  ax.axhline(50, color="k", ls=":", lw=1)
  ax.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=20, fontsize=8)
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  fig.tight_layout()
  fig.savefig(out, dpi=90)
  return out


# ------------------------------------------------------------------------------ HTML

def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  h = "".join(f"<th>{html.escape(str(x))}</th>" for x in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>"
                 for r in rows)
  return f"<table><tr>{h}</tr>{body}</table>"


def write_report(root: str | os.PathLike, doc: Mapping[str, Any],
                 results: Mapping[str, Any] | None = None, *, report_set: int = 0,
                 progress: bool = False) -> pathlib.Path:
  """Write `report/report.html` and its PNGs under `root`; returns the HTML path."""
  root = pathlib.Path(root)
  out = root / "report"
  out.mkdir(parents=True, exist_ok=True)
  results = compute_results(doc) if results is None else results
  units = [u for u in doc["units"] if u["role"] == "main"]
  trials = {(t["unit"], t["image_set"]): t for t in doc["trials"] if t["role"] == "main"}
  parts = [
      "<!doctype html><html><head><meta charset='utf-8'><title>cv_jax experiment report</title>",
      "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:"
      "collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
      "img{max-width:100%}.note{color:#555;font-size:90%}</style></head><body>",
      "<h1>Causal-understanding experiment</h1>",
  ]
  cfg = doc.get("config", {})
  occ = doc["occlusion"]
  parts.append(
      f"<p>Model <b>{html.escape(doc['model']['name'])}</b>, {results['n_units']} units x "
      f"{results['n_sets']} image sets = {results['n_units'] * results['n_sets']} main trials; "
      f"occluder {occ['size']} px, stride {occ['stride']}, fill {occ['fill']}; "
      f"{len(doc['tasks'])} tasks. Config <code>{html.escape(str(cfg.get('name', '')))}</code>. "
      f"Median relative activation difference (max-min)/base: "
      f"{results['relative_activation_difference']['median']:.3g}.</p>")
  # Accuracy
  acc = results["accuracy"]
  parts.append("<h2>Baseline accuracy</h2>")
  parts.append(_table(["baseline", "accuracy (%)", "± 2 SEM", "trials"],
                      [[LABELS[b], f"{v['mean'] * 100:.1f}", f"{v['sem2'] * 100:.1f}", v["n"]]
                       for b, v in acc.items()]))
  accuracy_figure(results, out / "accuracy.png")
  parts.append("<img src='accuracy.png' alt='accuracy'>")
  parts.append("<p class='note'>A baseline is scored like a participant: correct when it "
               "picks the max-activation image; ties count as incorrect. The paper shows these "
               "accuracies only in Fig. 4A (not reproduced here).</p>")
  # Kappa
  if results.get("kappa"):
    k = results["kappa"]
    names = k["names"]
    parts.append("<h2>Cohen's kappa between baselines (x100, mean ± 2 SEM over image sets)</h2>")
    rows = []
    for i, a in enumerate(names):
      row = [LABELS[a]]
      for j, b in enumerate(names):
        m, e = k["mean100"][i][j], k["sem2_100"][i][j]
        row.append("nan" if m is None else f"{m} ± {e}")
      rows.append(row)
    parts.append(_table([""] + [LABELS[n] for n in names], rows))
    prow = []
    for (a, b), (m, e) in PAPER_KAPPA.items():
      if a in names and b in names:
        i, j = names.index(a), names.index(b)
        ours = k["mean100"][i][j]
        prow.append([f"{LABELS[a]} – {LABELS[b]}", f"{m} ± {e}",
                     "nan" if ours is None else f"{ours} ± {k['sem2_100'][i][j]}",
                     k["nan_sets"].get(f"{names[min(i, j)]}|{names[max(i, j)]}", 0)])
      for alt in ("center_published",):
        if a == "center" and alt in names and b in names:
          i, j = names.index(alt), names.index(b)
          ours = k["mean100"][i][j]
          prow.append([f"{LABELS[alt]} – {LABELS[b]}", f"{m} ± {e}",
                       "nan" if ours is None else f"{ours} ± {k['sem2_100'][i][j]}",
                       k["nan_sets"].get(f"{names[min(i, j)]}|{names[max(i, j)]}", 0)])
    parts.append("<h3>Beside the paper</h3>")
    parts.append(_table(["pair", "paper", "this run", "NaN sets"], prow))
    kappa_figure(results, out / "kappa.png")
    parts.append("<img src='kappa.png' alt='kappa'>")
    parts.append("<p class='note'>Kappa on correctness per image set over the units, then mean "
                 "and 2 SEM (ddof=0) over the sets, x100 and truncated, exactly as the paper's "
                 "analysis code. A set where both baselines are constant and equal has p_e = 1 "
                 "and an undefined kappa (NaN, which makes the mean NaN, as in the paper's code)."
                 " The paper used InceptionV1 (inception5h), 599,552 ImageNet training images "
                 "and DeepGaze IIE; differences in any of these change the numbers.</p>")
  # Human study (cv-jax human simulate / analyze write it beside the machine report)
  parts.append("<h2>Human study</h2>")
  parts.append(f"<p><a href='../{HUMAN_REPORT}'>The human study's report</a> (accuracy per "
               "condition, Cohen's kappa of participants and baselines, per-layer accuracy, "
               "exclusion), once written by <code>cv-jax human analyze --export=EXPORT "
               f"--experiment={html.escape(str(root))} --out={html.escape(str(root))}/"
               f"{HUMAN_REPORT.rsplit('/', 1)[0]}</code>; without participants, "
               "<code>cv-jax human simulate --offline</code> makes an export to try it on. "
               "See docs/human_analysis.md.</p>")
  # Units
  parts.append(f"<h2>Units (image set {report_set})</h2>")
  it = units
  if progress:
    from tqdm import tqdm
    it = tqdm(units, desc="report", unit="unit")
  for u in it:
    t = trials.get((u["id"], report_set))
    if t is None:
      continue
    name = f"unit_{u['id']}.png"
    unit_figure(root, doc, u, t, out / name)
    parts.append(f"<h3>{html.escape(u.get('branch') or u['unit'])}</h3>"
                 f"<img src='{name}' alt='{html.escape(u['id'])}'>")
  parts.append("</body></html>")
  path = out / "report.html"
  path.write_text("\n".join(parts))
  return path


def write_results(root: str | os.PathLike, results: Mapping[str, Any]) -> pathlib.Path:
  """Write `results.json`."""
  def clean(x):
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
      return None
    return x
  path = pathlib.Path(root) / "results.json"
  path.write_text(json.dumps(clean(results), indent=1) + "\n")
  return path
