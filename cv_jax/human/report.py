"""`results_human.json`, the figures and `report.html` of a human study (`cv-jax human analyze`).

`run(export, experiment, out)` reads an export (folder or zip) and the experiment folder it was
collected with, runs `analysis.analyze`, and writes into `out`: `results_human.json`, one PNG
per figure of `figures.ALL` and `report.html` (figures and tables, each beside the paper's
numbers where the paper has them).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from cv_jax.human import analysis, figures
from cv_jax.human.export_format import read_export

_NOTES = {
    "accuracy": "Pooled fraction correct over the included participants' main trials (catch "
                "trials excluded); error bars 2 SEM = 2 np.std(ddof=0)/sqrt(N) over "
                "per-participant accuracies; dashed: chance. Hatched: the paper's Fig. 3A "
                "(Natural, Mixed and Blur are reported together as 66-67 ± 3 %).",
    "rt": "Mean response time over trials (s), 2 SEM over per-participant means (Fig. 3B, 13).",
    "confidence": "Proportion of trials at each confidence label (the label shown under the "
                  "clicked button unless the analysis used the paper's stored field), 2 SEM "
                  "over the condition's participants (Fig. 12; the paper's SEM ran over all "
                  "participants of all conditions, see `sem2_paper` in results_human.json).",
    "baselines": "Each baseline scored on every included main row of all conditions (Fig. 4A); "
                 "Object is the paper's hard-coded value (not machine-reproducible). Lines: "
                 "human accuracies.",
    "kappa": "Cohen's kappa on correctness per image set over the units sorted by (layer, "
             "branch); within a condition all pairs of its participants, between conditions all "
             "cross pairs, a baseline against each participant, baselines against each other "
             "once per set; mean and 2 SEM over all pairs of all sets, x100 and truncated "
             "(the paper's pairing and display rules). Undefined kappas (both raters constant) "
             "are left out and counted in `n_nan`.",
    "kappa_per_set": "Kappa per image set (mean over the set's pairs); lines: overall mean "
                     "(Fig. 15).",
    "per_layer": "Pooled accuracy per layer (1-based) and branch (Fig. 5A/B); catch trials per "
                 "layer of the participants passing every check except the catch trials "
                 "(instruction >= 15 s, total in [90, 900] s, >= 1 left choice; Fig. 5C).",
    "activation_difference": "Accuracy per (trial, condition) against the relative activation "
                             "difference (max - min) / base; Spearman rho; 5 quantile bins, "
                             "mean ± std (Fig. 7, 16).",
    "example_units": "Per-image-set accuracy of the paper's example pool units: easy mixed5a, "
                     "intermediate mixed4e, difficult mixed3b (Fig. 14).",
    "exclusion": "Exclusion dashboards: distributions for passed and excluded sessions with the "
                 "paper's thresholds (dashed; the None condition's where they differ), sessions "
                 "per task, per-participant accuracy, and the session counts (Fig. 17/18).",
}


def _clean(x):
  if isinstance(x, dict):
    return {str(k): _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if hasattr(x, "item") and not isinstance(x, (str, bytes)):
    return _clean(x.item())
  return x


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
  h = "".join(f"<th>{html.escape(str(x))}</th>" for x in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>"
                 for r in rows)
  return f"<table><tr>{h}</tr>{body}</table>"


def _pct(x, digits=1) -> str:
  return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else \
      f"{100 * x:.{digits}f}"


def write(results: Mapping[str, Any], out: str | os.PathLike) -> pathlib.Path:
  """Write results_human.json, the PNGs and report.html into `out`; returns the HTML path."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  results = _clean(results)
  (out / "results_human.json").write_text(json.dumps(results, indent=1) + "\n")
  for name, fn in figures.ALL.items():
    fn(results, out / f"{name}.png")
  L = analysis.LABELS
  conds = results["conditions"]
  parts = [
      "<!doctype html><html><head><meta charset='utf-8'><title>cv_jax human study report</title>",
      ("<style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:"
       "collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
       "img{max-width:100%}.note{color:#555;font-size:90%}</style></head><body>"),
      "<h1>Human study: the paper's results</h1>"]
  ex = results["export"]
  parts.append(f"<p>Export from <b>{html.escape(str(ex.get('source')))}</b>, exported "
               f"{html.escape(str(ex.get('exported_at')))}, experiment sha256 "
               f"<code>{html.escape(str(ex.get('experiment_sha256')))}</code>. Exclusion: "
               f"{html.escape(results['settings']['exclusion'])} with the rules in "
               "results_human.json; confidence labels: "
               f"{html.escape(results['settings']['confidence_labels'])}.</p>")
  # counts
  crit = list(results["counts"]["all"]["excluded_per_criterion"])
  rows = []
  for c in conds + ["all"]:
    n = results["counts"][c]
    rows.append([L.get(c, c), n["started"], n["completed"], n["abandoned"], n["excluded"]]
                + [n["excluded_per_criterion"][k] for k in crit] + [n["duplicates"],
                                                                     n["included"]])
  parts.append("<h2>Participants</h2>")
  parts.append(_table(["condition", "started", "completed", "abandoned", "excluded"]
                      + [f"failed {k}" for k in crit] + ["duplicate", "included"], rows))
  parts.append("<p class='note'>A session can fail several criteria. "
               "row_variability is the paper's published check (a no-op); "
               "row_variability_intended (at least one choice of each side) is reported beside "
               "it and excludes only with rules.row_variability = intended. 'duplicate': a "
               "second passing session of a task, left out as the paper kept one per task.</p>")

  def fig(name, title):
    parts.append(f"<h2>{html.escape(title)}</h2><img src='{name}.png' alt='{name}'>")
    parts.append(f"<p class='note'>{html.escape(_NOTES[name])}</p>")

  fig("accuracy", "Accuracy per condition")
  acc = results["accuracy"]
  rows = []
  for c in conds:
    p = acc[c].get("paper")
    paper = "–" if not p else (f"{p['low']} ± {p['sem2']}" if p["low"] == p["high"]
                               else f"{p['low']}–{p['high']} ± {p['sem2']}")
    rows.append([L.get(c, c), _pct(acc[c]["mean"]), _pct(acc[c]["sem2"]),
                 acc[c]["n_participants"], acc[c]["n_trials"], paper])
  parts.append(_table(["condition", "accuracy (%)", "± 2 SEM", "participants", "trials",
                       "paper (%)"], rows))
  fig("rt", "Response time")
  fig("confidence", "Confidence")
  fig("baselines", "Baselines")
  b = results["baselines"]
  mach = (b.get("machine") or {}).get("accuracy", {})
  parts.append(_table(["baseline", "on participants' rows (%)", "± 2 SEM", "rows",
                       "over all trials, machine side (%)"],
                      [[L.get(n, n), _pct(v["mean"]), _pct(v["sem2"]), v["n_rows"],
                        _pct(mach.get(n, {}).get("mean"))] for n, v in b["accuracy"].items()]
                      + [["Object (paper)", _pct(b["object_paper"]["mean"], 2),
                          _pct(2 * b["object_paper"]["sem"], 2), "–", "–"]]))
  fig("kappa", "Cohen's kappa")
  k = results["kappa"]
  names = k["names"]
  pn = k["paper"]["names"]
  rows = []
  for i, a in enumerate(names):
    row = [L.get(a, a)]
    for j, bb in enumerate(names):
      m, e = k["mean100"][i][j], k["sem2_100"][i][j]
      cell = "–" if m is None else f"{m} ± {e}"
      if a in pn and bb in pn:
        pi, pj = pn.index(a), pn.index(bb)
        cell += f" ({k['paper']['mean100'][pi][pj]} ± {k['paper']['sem2_100'][pi][pj]})"
      row.append(cell)
    rows.append(row)
  parts.append("<p>This study, with the paper's value in brackets:</p>")
  parts.append(_table([""] + [L.get(n, n) for n in names], rows))
  sub = [n for n in ("synthetic", "natural", "saliency") if n in names]
  if len(sub) > 1:  # the paper's Fig. 4C
    idx = [names.index(n) for n in sub]
    parts.append("<p>Synthetic, Natural and Saliency (the paper's Fig. 4C):</p>")
    parts.append(_table([""] + [L[n] for n in sub],
                        [[L[sub[a]]] + [rows[i][j + 1] for j in idx] for a, i in enumerate(idx)]))
  fig("kappa_per_set", "Kappa per image set")
  fig("per_layer", "Accuracy per layer and branch")
  fig("activation_difference", "Accuracy and the relative activation difference")
  ad = results["activation_difference"]
  parts.append(_table(["branch"] + [L.get(c, c) for c in conds] + ["all"],
                      [[br] + ["–" if ad[br]["spearman"].get(c) is None else
                               f"{ad[br]['spearman'][c]:.3f}" for c in conds]
                       + ["–" if ad[br]["spearman_all"] is None else
                          f"{ad[br]['spearman_all']:.3f}"] for br in ad]))
  fig("example_units", "Example units per image set")
  fig("exclusion", "Exclusion")
  # per unit, per participant
  parts.append("<h2>Accuracy per unit (%)</h2>")
  parts.append(_table(["unit"] + [L.get(c, c) for c in conds],
                      [[u] + [_pct(v[c]) for c in conds] for u, v in results["per_unit"].items()]))
  parts.append("<h2>Sessions</h2>")
  parts.append(_table(
      ["session", "condition", "task", "completed", "passed", "included", "failed",
       "instruction (s)", "total (s)", "catch", "practice", "accuracy (%)"],
      [[s["session_id"], L.get(s["condition"], s["condition"]), s["task_id"], s["completed"],
        s["passed"], s["included"], " ".join(s["failed"]) or "–",
        "–" if s["instruction_s"] is None else f"{s['instruction_s']:.1f}",
        "–" if s["total_s"] is None else f"{s['total_s']:.1f}",
        "–" if s["catch_ratio"] is None else f"{s['catch_ratio']:.2f}",
        s["practice_attempts"] if s["practice_attempts"] is not None else "–",
        _pct(s["accuracy"])] for s in results["sessions"]]))
  parts.append("</body></html>")
  path = out / "report.html"
  path.write_text("\n".join(parts))
  return path


def load_experiment(path: str | os.PathLike) -> dict[str, Any]:
  """The experiment document from a folder (its experiment.json) or the file itself."""
  p = pathlib.Path(path)
  if p.is_dir():
    p = p / "experiment.json"
  if not p.is_file():
    raise analysis.AnalysisError(f"no experiment.json at {path}; pass the experiment folder "
                                 "the study served (--experiment=DIR)")
  return json.loads(p.read_text())


def run(export: str | os.PathLike, experiment: str | os.PathLike | None,
        out: str | os.PathLike, **kwargs) -> tuple[dict[str, Any], pathlib.Path]:
  """Read, analyse, write. `experiment` None: the export's own experiment.json (the importer's).

  Returns (results, report.html path). kwargs go to `analysis.analyze`.
  """
  exp = read_export(export)
  if experiment is None:
    experiment = pathlib.Path(export)
  doc = load_experiment(experiment)
  want = exp.manifest.get("experiment_sha256")
  p = pathlib.Path(experiment)
  p = p / "experiment.json" if p.is_dir() else p
  got = hashlib.sha256(p.read_bytes()).hexdigest()
  if want and want != got:
    raise analysis.AnalysisError(f"the export was collected with experiment sha256 {want[:12]}…, "
                                 f"{p} has {got[:12]}…; pass the experiment the study served")
  results = analysis.analyze(exp, doc, **kwargs)
  return results, write(results, out)
