"""MIS outputs: per-unit scores (JSON + CSV), per-task deltas, and an HTML report with figures.

Files written under the output folder:
  mis_scores.json   schema "cv_jax.mis" 1.x: settings, similarity label, timings, per-layer
                    summaries, one row per unit (and human agreement when given)
  mis_scores.csv    one row per unit: unit, layer, channel, branch, mis, accuracy,
                    accuracy_sem, constant, similarity
  mis_deltas.npz    `deltas` (U, N) float32 and `units` (U,) names
  report/report.html, report/mis_layers.png, report/mis_extremes.png
"""

from __future__ import annotations

import csv
import html
import json
import math
import pathlib
from typing import Any

import numpy as np

SCHEMA_NAME = "cv_jax.mis"
SCHEMA_VERSION = "1.0.0"


def layer_summary(result) -> list[dict[str, Any]]:
  """Per layer: units, constant units, mean / median / sd of MIS and of the accuracy."""
  out = []
  layers = list(dict.fromkeys(result.pools.layers))
  names = np.asarray(result.pools.layers)
  for layer in layers:
    ix = names == layer
    row = dict(layer=layer, n_units=int(ix.sum()),
               n_constant=int(result.scores["constant"][ix].sum()))
    for key in ("mis", "accuracy"):
      v = result.scores[key][ix]
      v = v[np.isfinite(v)]
      row[key] = dict(mean=float(v.mean()) if v.size else None,
                      median=float(np.median(v)) if v.size else None,
                      sd=float(v.std(ddof=1)) if v.size > 1 else None)
    out.append(row)
  return out


def document(result) -> dict[str, Any]:
  """The mis_scores.json document."""
  import cv_jax
  s = result.similarity
  return dict(schema=SCHEMA_NAME, schema_version=SCHEMA_VERSION,
              generator=dict(package="cv_jax", version=cv_jax.__version__),
              model=result.model, source=result.source,
              similarity=dict(label=s.label, paper_similarity=s.paper_similarity, note=s.note,
                              **s.details),
              config=result.config, timings=result.timings, layers=layer_summary(result),
              human=result.human, units=result.rows())


def write_scores(out: str | pathlib.Path, result) -> dict[str, pathlib.Path]:
  """Write mis_scores.json, mis_scores.csv and mis_deltas.npz; returns their paths."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  paths = dict(json=out / "mis_scores.json", csv=out / "mis_scores.csv",
               deltas=out / "mis_deltas.npz")
  paths["json"].write_text(json.dumps(document(result), indent=1, allow_nan=False) + "\n")
  cols = ("unit", "layer", "channel", "branch", "mis", "accuracy", "accuracy_sem", "constant")
  with open(paths["csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols + ("similarity",))
    for r in result.rows():
      w.writerow([("" if r[c] is None else r[c]) for c in cols] + [result.similarity.note])
  np.savez(paths["deltas"], deltas=result.scores["deltas"], units=np.asarray(result.units))
  return paths


def _layers_figure(result, path: pathlib.Path) -> pathlib.Path:
  from matplotlib.figure import Figure
  layers = list(dict.fromkeys(result.pools.layers))
  names = np.asarray(result.pools.layers)
  short = [layer.replace("_pre_relu", "") for layer in layers]
  alpha = result.config.get("alpha")
  fig = Figure(figsize=(max(6.0, 1.0 * len(layers) + 2), 3.4 if alpha is None else 6.2), dpi=100)
  panels = [("accuracy", "MIS, alpha = None (fraction of tasks solved)")]
  if alpha is not None:
    panels.append(("mis", f"MIS, alpha = {alpha}"))
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  for ax, (key, title) in zip(axes, panels):
    data = []
    for layer in layers:
      v = result.scores[key][names == layer]
      data.append(v[np.isfinite(v)])
    keep = [i for i, d in enumerate(data) if d.size]
    if keep:
      ax.violinplot([data[i] for i in keep], positions=[i + 1 for i in keep], widths=0.8,
                    showmeans=True, showextrema=False)
    ax.set_title(title, fontsize=10)
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
  axes[-1].set_xticks(range(1, len(layers) + 1), short, rotation=0, fontsize=8)
  sim = result.similarity
  fig.suptitle(f"{result.model}: MIS of {len(result.units)} units over {result.pools.n_images} "
               f"images\nsimilarity: {sim.label}" + ("" if sim.paper_similarity else
                                                    "\n(not the paper's DreamSim similarity)"),
               fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  return path


def extreme_units(result, n: int = 3) -> tuple[list[int], list[int]]:
  """Indices of the n highest- and n lowest-scoring non-constant units (by MIS, then id)."""
  m = result.scores["mis"]
  ok = np.flatnonzero(np.isfinite(m))
  order = ok[np.lexsort((ok, -m[ok]))]
  return [int(i) for i in order[:n]], [int(i) for i in order[::-1][:n]]


def _extremes_figure(result, source, path: pathlib.Path, n: int = 3, k: int = 9,
                     thumb: int = 64) -> pathlib.Path | None:
  from matplotlib.figure import Figure
  from PIL import Image
  easy, hard = extreme_units(result, n)
  rows = [("easiest", i) for i in easy] + [("hardest", i) for i in hard]
  if not rows or source is None:
    return None
  k = min(k, result.pools.size)
  fig = Figure(figsize=(2 * k * 0.75 + 0.6, len(rows) * 0.95 + 0.5), dpi=100)
  axes = fig.subplots(len(rows), 2 * k + 1, squeeze=False,
                      gridspec_kw=dict(width_ratios=[1] * k + [0.25] + [1] * k))
  cache: dict[int, np.ndarray] = {}

  def img(i: int) -> np.ndarray:
    if i not in cache:
      a = np.clip(np.round(source.load(i) * 255), 0, 255).astype(np.uint8)
      cache[i] = np.asarray(Image.fromarray(a).resize((thumb, thumb), Image.BILINEAR))
    return cache[i]

  for r, (tag, u) in enumerate(rows):
    top = result.pools.top[u][:k]
    bot = result.pools.bottom[u][:k]
    for j in range(2 * k + 1):
      ax = axes[r, j]
      ax.set_axis_off()
      if j < k:
        ax.imshow(img(int(bot[j])))
      elif j > k:
        ax.imshow(img(int(top[j - k - 1])))
    name = result.branches[u] or result.units[u]
    axes[r, 0].set_title(f"{tag}: {name}  MIS {result.scores['mis'][u]:.3f}, "
                         f"accuracy {result.scores['accuracy'][u]:.2f}", fontsize=8, loc="left")
  fig.suptitle(f"left: the {k} least activating images | right: the {k} most activating "
               "(each most extreme first)", fontsize=8)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / (len(rows) + 0.5),
                      wspace=0.04, hspace=0.5)
  fig.savefig(path)
  return path


def _fmt(x, digits=3) -> str:
  return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def write_report(out: str | pathlib.Path, result, source=None) -> pathlib.Path:
  """report/report.html with the per-layer figure, the extreme units and the tables."""
  d = pathlib.Path(out) / "report"
  d.mkdir(parents=True, exist_ok=True)
  layers_png = _layers_figure(result, d / "mis_layers.png")
  ext_png = _extremes_figure(result, source, d / "mis_extremes.png")
  sim = result.similarity
  c = result.config
  e = html.escape
  parts = [
      "<!doctype html><html><head><meta charset='utf-8'><title>MIS report</title>",
      "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
      "text-align:right}th{background:#eee}.warn{background:#fff3cd;padding:.6em;"
      "border:1px solid #e0c36b}img{max-width:100%}</style></head><body>",
      f"<h1>Machine interpretability score: {e(result.model)}</h1>",
      f"<p>{len(result.units)} units of {len(c['layers'])} layers, {result.pools.n_images} "
      f"images from <code>{e(result.source)}</code>. K = {c['k']}, N = {c['n_tasks']} tasks, "
      f"q = {c['quantile']} (pools of {c['pool_size']}), alpha = {c['alpha']}, seed "
      f"{c['seed']}.</p>",
      f"<p><b>Similarity:</b> {e(sim.label)}.</p>",
  ]
  if not sim.paper_similarity:
    parts.append(f"<p class='warn'>This is {e(emb_note())}</p>")
  t = result.timings
  parts.append(f"<p>Time: sweep {_fmt(t.get('sweep_s'), 1)} s, embedding "
               f"{_fmt(t.get('embedding_s'), 1)} s, scoring {_fmt(t.get('score_s'), 2)} s.</p>")
  parts.append(f"<h2>Per layer</h2><img src='{layers_png.name}' alt='MIS per layer'>")
  parts.append("<table><tr><th>layer</th><th>units</th><th>constant</th><th>accuracy mean</th>"
               "<th>median</th><th>MIS mean</th><th>median</th></tr>")
  for r in layer_summary(result):
    parts.append(f"<tr><td>{e(r['layer'])}</td><td>{r['n_units']}</td><td>{r['n_constant']}"
                 f"</td><td>{_fmt(r['accuracy']['mean'])}</td><td>{_fmt(r['accuracy']['median'])}"
                 f"</td><td>{_fmt(r['mis']['mean'])}</td><td>{_fmt(r['mis']['median'])}</td></tr>")
  parts.append("</table>")
  easy, hard = extreme_units(result, 10)
  parts.append("<h2>Easiest and hardest units</h2>")
  if ext_png is not None:
    parts.append(f"<img src='{ext_png.name}' alt='exemplars of the easiest and hardest units'>")
  for title, ix in (("Highest MIS", easy), ("Lowest MIS", hard)):
    parts.append(f"<h3>{title}</h3><table><tr><th>unit</th><th>branch</th><th>MIS</th>"
                 "<th>accuracy</th><th>± SEM</th></tr>")
    for i in ix:
      parts.append(f"<tr><td>{e(result.units[i])}</td><td>{e(result.branches[i] or '')}</td>"
                   f"<td>{_fmt(result.scores['mis'][i])}</td>"
                   f"<td>{_fmt(result.scores['accuracy'][i], 2)}</td>"
                   f"<td>{_fmt(result.scores['accuracy_sem'][i], 2)}</td></tr>")
    parts.append("</table>")
  if result.human:
    h = result.human
    parts.append("<h2>Agreement with human 2-AFC accuracy</h2>")
    parts.append(f"<p>{h['n_units']} units with human data: Spearman (units) "
                 f"{_fmt(h['spearman_units'])}; mean MIS {_fmt(h['mis_mean'])}, mean human "
                 f"accuracy {_fmt(h['human_mean'])}.")
    if "spearman_models" in h:
      parts.append(f" Spearman over model means: {_fmt(h['spearman_models'])}.")
    if h.get("fit"):
      f = h["fit"]
      parts.append(f" Fitted alpha {_fmt(f['alpha'], 4)} (RMSE {_fmt(f['rmse'])}).")
    parts.append("</p>")
  parts.append("<p>Files: <code>mis_scores.json</code>, <code>mis_scores.csv</code>, "
               "<code>mis_deltas.npz</code>.</p></body></html>")
  path = d / "report.html"
  path.write_text("\n".join(parts))
  return path


def emb_note() -> str:
  """The warning shown for non-DreamSim similarities."""
  from cv_jax.mis.embeddings import NOT_PAPER
  return NOT_PAPER + "."
