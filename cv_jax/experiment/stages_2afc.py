"""The stages of the 2-AFC exemplar experiment (`task = "exemplar_2afc"`), each a function of
the `pipeline.Experiment` it runs in: exemplars -> featvis -> trials -> report (after the shared
sweep stage), each beside the settings it depends on (as `cv_jax.experiment.stages`).

Folder layout (paths in experiment.json are relative to the workdir):
  exemplars_2afc.json                         per unit and side: query / reference ids, ranks
  stimuli/<unit>/set{b}/query_{max,min}.png, natural_{max,min}_{k}.png
  stimuli/<unit>/synthetic_{max,min}_{k}.png, featvis_2afc.json
  experiment.json (task "exemplar_2afc"), experiment.schema.json, report/report.html
"""

from __future__ import annotations

import html
import pathlib

import numpy as np

from cv_jax import progress as progress_lib
from cv_jax.data.png import load_png, save_png
from cv_jax.experiment import exemplar_2afc as x2
from cv_jax.experiment import schema as schema_lib
from cv_jax.experiment import stages
from cv_jax.experiment import trials as trials_lib
from cv_jax.experiment.files import read_json, to_plain, write_json

SIDES = x2.SIDES


def exemplars(exp) -> dict:
  """Select every unit's queries and natural references; save the PNGs of the sets in use."""
  res = stages.sweep_result(exp)
  e = exp.cfg.exemplar_2afc
  n = len(res.paths) - len(res.failed)
  out = {}
  for u in exp.units:
    top_ids, top_val = res.unit(f"{u.layer}:{u.channel}", largest=True)
    bot_ids, bot_val = res.unit(f"{u.layer}:{u.channel}", largest=False)
    sel = x2.select_2afc(top_ids, bot_ids, n, channel=u.channel, n_references=e.n_references,
                         bin_size=e.bin_size, query_percentile=e.query_percentile,
                         seed=int(e.seed))
    val = {"max": dict(zip(map(int, top_ids), map(float, top_val))),
           "min": dict(zip(map(int, bot_ids), map(float, bot_val)))}
    out[u.id] = {side: dict(
        query=sel[side]["query"], query_rank=sel[side]["query_rank"],
        query_activation=[val[side][int(i)] for i in sel[side]["query"]],
        references=sel[side]["references"], reference_ranks=sel[side]["reference_ranks"],
        reference_activations=[[val[side][int(i)] for i in row]
                               for row in sel[side]["references"]]) for side in SIDES}
    out[u.id]["unit"] = f"{u.layer}:{u.channel}"
  write_json(exp.root / "exemplars_2afc.json", dict(paths=res.paths, n_images=n, units=out))

  def images_of(u, b):
    for side in SIDES:
      sel = out[u.id][side]
      yield f"query_{side}.png", sel["query"][b]
      for k, i in enumerate(sel["references"][b]):
        yield f"natural_{side}_{k}.png", i
  stages.save_set_images(exp, res, "2afc exemplars", images_of)
  return dict(n_units=len(out), n_images=n)


def _min_objective(layer: str, channel: int, diversity: float):
  """Minimise the unit (maximise -channel), with the same diversity term as for max units."""
  from cv_jax.featvis import objectives as obj
  o = -obj.channel(layer, channel)
  if diversity:
    o = o - diversity * obj.diversity(layer)
  return o


def featvis(exp) -> dict:
  """Max and min feature visualizations (the synthetic references), one program per chunk."""
  import jax
  from cv_jax import featvis as fv
  if "synthetic" not in exp.cfg.conditions:
    return dict(skipped="synthetic condition not requested")
  c = exp.cfg.featvis
  nref = int(exp.cfg.exemplar_2afc.n_references)
  units = exp.units
  per = max(1, int(c.units_per_call))
  chunks = [units[i:i + per] for i in range(0, len(units), per)]
  cfg = stages.featvis_config(exp, nref)
  jobs = [(side, ci, ch) for side in SIDES for ci, ch in enumerate(chunks)]
  for side, ci, chunk in progress_lib.bar(jobs, "featvis 2afc", enabled=exp.progress):
    metas = [exp.root / "stimuli" / u.id / f"featvis_2afc_{side}.json" for u in chunk]
    if all(m.exists() for m in metas):
      continue
    key = jax.random.fold_in(jax.random.PRNGKey(int(exp.cfg.seed)), 1000 + 2 * ci + (side == "min"))
    if side == "max":
      targets = [f"{u.layer}:{u.channel}" for u in chunk]
    else:
      targets = [_min_objective(u.layer, u.channel, float(cfg.get("diversity", 0.0)))
                 for u in chunk]
    out = fv.render(exp.model, targets, cfg, key=key, progress=False)
    for j, (u, meta) in enumerate(zip(chunk, metas)):
      paths = []
      for k in range(nref):
        p = exp.root / "stimuli" / u.id / f"synthetic_{side}_{k}.png"
        save_png(p, out["images"][j, k])
        paths.append(exp.rel(p))
      imgs = np.stack([load_png(exp.root / p) for p in paths])
      acts = exp.acts(imgs, u.layer)[:, u.channel]
      write_json(meta, dict(paths=paths, activation=[float(a) for a in acts]))
  return {}


def trials(exp) -> dict:
  """Trials (main, catch, practice), tasks and experiment.json."""
  import cv_jax
  c = exp.cfg
  e = c.exemplar_2afc
  ex = read_json(exp.root / "exemplars_2afc.json")
  conds = [k for k in c.conditions if k in ("natural", "synthetic")]
  if not conds:
    raise ValueError(f"conditions {list(c.conditions)} name none of the 2-AFC conditions "
                     "natural, synthetic")
  nref = int(e.n_references)
  units_doc, synth = [], {}
  for u in exp.units:
    entry = dict(id=u.id, unit=f"{u.layer}:{u.channel}", branch=u.branch, layer=u.layer,
                 channel=u.channel, role=u.role, source=u.text)
    if "synthetic" in conds:
      synth[u.id] = {}
      entry["synthetic_activations"] = {}
      for side in SIDES:
        fm = read_json(exp.root / "stimuli" / u.id / f"featvis_2afc_{side}.json")
        synth[u.id][side] = fm["paths"]
        entry["synthetic_activations"][side] = fm["activation"]
    units_doc.append(entry)
  trials_out = []
  for u, b, role in exp.trial_keys():
    d = exp.set_dir(u, b)
    e_u = ex["units"][u.id]
    nat = {side: [exp.rel(d / f"natural_{side}_{k}.png") for k in range(nref)] for side in SIDES}
    info = {side: [dict(image_id=int(i), rank=int(r), activation=a, path=ex["paths"][int(i)])
                   for i, r, a in zip(e_u[side]["references"][b], e_u[side]["reference_ranks"][b],
                                      e_u[side]["reference_activations"][b])]
            for side in SIDES}
    refs = {}
    for cond in conds:
      # Catch trials show the natural references in every condition, so the answer (the most
      # extreme natural reference, used as the query) is on screen.
      refs[cond] = nat if cond == "natural" or role == "catch" else synth[u.id]
    if role == "catch":
      queries = {side: nat[side][0] for side in SIDES}
      qinfo = {side: dict(info[side][0]) for side in SIDES}
    else:
      queries = {side: exp.rel(d / f"query_{side}.png") for side in SIDES}
      qinfo = {side: dict(image_id=int(e_u[side]["query"][b]), rank=int(e_u[side]["query_rank"][b]),
                          activation=e_u[side]["query_activation"][b],
                          path=ex["paths"][int(e_u[side]["query"][b])]) for side in SIDES}
    t = dict(id=trials_lib.trial_id(u.id, b), kind="exemplar_2afc", unit=u.id,
             image_set=b, role=role, queries=queries, correct="max", query_info=qinfo,
             references=refs, reference_info={"natural": info})
    if role == "catch":
      t["catch"] = {"query": "the most extreme natural reference of each side (shown among the "
                             "references)"}
    trials_out.append(t)
  tasks = x2.make_tasks_2afc(trials_out, conds, n_tasks=c.tasks.n_tasks,
                             sets=list(range(c.n_sets)), seed=c.tasks.seed, n_references=nref)
  doc = dict(
      schema=schema_lib.SCHEMA_NAME, schema_version=schema_lib.SCHEMA_VERSION,
      task="exemplar_2afc", generator=dict(package="cv_jax", version=cv_jax.__version__),
      config=to_plain(c), model=dict(name=c.model.name, weights=c.model.get("weights")),
      data=dict(source=c.data.source, n_images=ex["n_images"]),
      selection=dict(n_references=nref, bin_size=int(e.bin_size),
                     query_percentile=e.query_percentile, n_images=int(ex["n_images"]),
                     query_window=None if e.query_percentile is None else [
                         x2.query_start(ex["n_images"], e.query_percentile) + 1,
                         x2.query_start(ex["n_images"], e.query_percentile) + int(e.bin_size)]),
      reference_sides={"min": "left", "max": "right"},
      conditions={k: dict(n_references=nref) for k in conds},
      units=units_doc, trials=trials_out, tasks=tasks)
  doc = to_plain(doc)
  schema_lib.validate(doc, exp.root)
  write_json(exp.root / "experiment.json", doc)
  schema_lib.write_schema(exp.root / "experiment.schema.json", task="exemplar_2afc")
  return dict(n_trials=len(trials_out), n_tasks=len(tasks))


def _trial_figure(root: pathlib.Path, doc, trial, out: pathlib.Path) -> pathlib.Path:
  from matplotlib.figure import Figure
  from PIL import Image
  conds = list(trial["references"])
  n = doc["selection"]["n_references"]
  fig = Figure(figsize=(2 * n * 0.7 + 1.6, 0.85 * len(conds) + 0.3), dpi=90)
  axes = fig.subplots(len(conds), 2 * n + 2, squeeze=False)
  for r, cond in enumerate(conds):
    imgs = (trial["references"][cond]["min"][::-1] + [trial["queries"]["min"],
            trial["queries"]["max"]] + trial["references"][cond]["max"])
    for j, (ax, p) in enumerate(zip(axes[r], imgs)):
      with Image.open(root / p) as im:
        ax.imshow(np.asarray(im.convert("RGB").resize((64, 64))))
      ax.set_axis_off()
      if j in (n, n + 1) and r == 0:
        side = "min" if j == n else "max"
        a = trial["query_info"][side]["activation"]
        ax.set_title(f"{side} query\n{a:.1f}", fontsize=6)
    axes[r, 0].set_title(cond, fontsize=7, loc="left")
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.05, hspace=0.3)
  fig.savefig(out)
  return out


def report(exp) -> dict:
  """report/report.html: each unit's trial at the report image set (min refs | queries | max)."""
  doc = read_json(exp.root / "experiment.json")
  d = exp.root / "report"
  d.mkdir(parents=True, exist_ok=True)
  s = exp.cfg.report_set
  sel = doc["selection"]
  parts = ["<!doctype html><html><head><meta charset='utf-8'><title>2-AFC experiment</title>"
           "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}img{max-width:"
           "100%}</style></head><body>", "<h1>2-AFC exemplar experiment</h1>",
           f"<p>{html.escape(doc['model']['name'])}, {sel['n_images']} images; "
           f"{sel['n_references']} references per side in bins of {sel['bin_size']}; queries "
           + ("from the most extreme bin (Borowski et al. 2021)" if sel["query_percentile"] is None
              else f"at ranks {sel['query_window'][0]}..{sel['query_window'][1]} from each end "
                   f"(percentile {sel['query_percentile']})")
           + f". {len(doc['trials'])} trials, {len(doc['tasks'])} tasks. Each row: min references "
             "(least activating nearest the queries), the min and max queries, max references "
             "(most activating nearest the queries).</p>"]
  for t in doc["trials"]:
    if t["role"] != "main" or t["image_set"] != s:
      continue
    png = _trial_figure(exp.root, doc, t, d / f"{t['unit']}_set{s:02d}.png")
    parts.append(f"<h3>{html.escape(t['unit'])}</h3><img src='{png.name}'>")
  parts.append("</body></html>")
  path = d / "report.html"
  path.write_text("\n".join(parts))
  return dict(report=exp.rel(path))


# ------------------------------------------------------------------------------ settings

def exemplars_settings(exp) -> dict:
  """The model, the images, the sweep, the 2-AFC selection settings and the units."""
  c = exp.cfg
  return dict(stages.model_and_data(exp), sweep=to_plain(c.sweep),
              exemplar_2afc=to_plain(c.exemplar_2afc), units=stages.unit_sets(exp))


def featvis_settings(exp) -> dict:
  """The model, the featvis settings, the seed, the reference count, conditions and units."""
  c = exp.cfg
  return dict(model=stages.model_and_data(exp)["model"], featvis=to_plain(c.featvis), seed=c.seed,
              n_references=c.exemplar_2afc.n_references, conditions=list(c.conditions),
              units=[(u.id, u.layer, u.channel) for u in exp.units])


def trials_settings(exp) -> dict:
  """The exemplars' and the feature visualizations' settings, the tasks and the conditions."""
  c = exp.cfg
  return dict(exemplars_settings(exp), tasks=to_plain(c.tasks), conditions=list(c.conditions),
              featvis=featvis_settings(exp))


def report_settings(exp) -> dict:
  """The trials' settings and the image set the report shows."""
  return dict(trials_settings(exp), report_set=exp.cfg.report_set)


STAGES = (
    stages.Stage("exemplars_2afc", exemplars, exemplars_settings),
    stages.Stage("featvis_2afc", featvis, featvis_settings),
    stages.Stage("trials_2afc", trials, trials_settings),
    stages.Stage("report_2afc", report, report_settings),
)
"""The 2-AFC task's stages after the shared sweep stage (`stages.STAGES[0]`)."""
