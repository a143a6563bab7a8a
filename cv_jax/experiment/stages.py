"""The experiment's stages: one function per stage, and the settings each one depends on.

`STAGES` lists them in order. A stage's `run(exp)` writes its outputs under `exp.root` (and
resumes per item where that is cheap); its `settings(exp)` is what those outputs depend on:
`cv_jax.experiment.pipeline` fingerprints it into the stage's marker, so a finished stage is
skipped on resume and a changed setting is refused.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from cv_jax import progress as progress_lib
from cv_jax.data.png import load_png, save_png
from cv_jax.experiment import report as report_lib
from cv_jax.experiment import schema as schema_lib
from cv_jax.experiment import trials as trials_lib
from cv_jax.experiment.baselines import baseline_values, choice, get_saliency_model, score
from cv_jax.experiment.files import read_json, to_plain, write_json

if TYPE_CHECKING:
  from cv_jax.experiment.pipeline import Experiment


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage: `run(exp)` -> extra fields for its marker; `settings(exp)` -> what it depends on."""
  name: str
  run: Callable[[Experiment], dict]
  settings: Callable[[Experiment], dict]


# ------------------------------------------------------------------------------ settings

def model_and_data(exp: Experiment) -> dict:
  """The model and image-source settings most stages depend on."""
  c = exp.cfg
  return dict(model=dict(name=c.model.name, weights=c.model.get("weights"),
                         random_init=c.model.get("random_init")),
              data=to_plain(c.data))


def unit_sets(exp: Experiment) -> list:
  """The units with their layers, channels and image sets."""
  return [(u.id, u.layer, u.channel, sorted(u.sets.items())) for u in exp.units]


def sweep_settings(exp: Experiment) -> dict:
  """The sweep depends on the model, the images, the sweep settings and the units' layers (and,
  for the 2-AFC task, the table depth it needs)."""
  extra = {"k": sweep_k(exp)} if exp.cfg.get("task", "occlusion") == "exemplar_2afc" else {}
  return dict(model_and_data(exp), sweep=to_plain(exp.cfg.sweep),
              layers=sorted({u.layer for u in exp.units}), **extra)


def exemplars_settings(exp: Experiment) -> dict:
  """... and the exemplar bins and the units."""
  c = exp.cfg
  return dict(model_and_data(exp), sweep=to_plain(c.sweep), exemplars=to_plain(c.exemplars),
              units=unit_sets(exp))


def featvis_settings(exp: Experiment) -> dict:
  """The model, the featvis settings, the seed and the units (not the images)."""
  c = exp.cfg
  return dict(model=model_and_data(exp)["model"], featvis=to_plain(c.featvis), seed=c.seed,
              units=[(u.id, u.layer, u.channel) for u in exp.units])


def occlusion_settings(exp: Experiment) -> dict:
  """The model, the images, the exemplar bins (queries), the occluder and the units."""
  c = exp.cfg
  return dict(model_and_data(exp), exemplars=to_plain(c.exemplars), occlusion=to_plain(c.occlusion),
              units=unit_sets(exp))


def blur_settings(exp: Experiment) -> dict:
  """The model, the images, the exemplar bins, the blur settings, the window size, the units."""
  c = exp.cfg
  return dict(model_and_data(exp), exemplars=to_plain(c.exemplars), blur=to_plain(c.blur),
              occlusion_size=c.occlusion.size, units=unit_sets(exp))


def trials_settings(exp: Experiment) -> dict:
  """Everything the stimuli depend on, and the tasks and conditions."""
  c = exp.cfg
  return dict(model_and_data(exp), units=unit_sets(exp), tasks=to_plain(c.tasks),
              conditions=list(c.conditions), occlusion=to_plain(c.occlusion),
              blur=to_plain(c.blur), featvis=to_plain(c.featvis),
              exemplars=to_plain(c.exemplars))


def baselines_settings(exp: Experiment) -> dict:
  """The trials' settings and the saliency model."""
  return dict(trials_settings(exp), saliency=exp.cfg.saliency)


def report_settings(exp: Experiment) -> dict:
  """The baselines' settings and the image set the report shows."""
  return dict(baselines_settings(exp), report_set=exp.cfg.report_set)


# ------------------------------------------------------------------------------ stages

def run_sweep(exp: Experiment) -> dict:
  """The dataset sweep over the image source: top-k / bottom-k images of every unit's layer."""
  from cv_jax import sweep
  c = exp.cfg.sweep
  layers = sorted({u.layer for u in exp.units})
  res = sweep.run(exp.model, exp.source, layers, k=sweep_k(exp), batch_size=c.batch_size,
                  micro_batch=c.micro_batch, workdir=exp.root / "sweep_work",
                  progress=exp.progress)
  res.save(exp.root / "sweep")
  return dict(n_images=len(res.paths), failed=len(res.failed))


def run_exemplars(exp: Experiment) -> dict:
  """Query and natural reference images per unit and image set (the paper's bins); saves the references."""
  from cv_jax import sweep
  res = sweep_result(exp)
  e = exp.cfg.exemplars
  out = {}
  for u in exp.units:
    ids, vals = res.unit(f"{u.layer}:{u.channel}")
    ex = sweep.select_exemplars(ids, n_bins=e.n_bins, bin_size=e.bin_size,
                                seed=u.channel + e.seed_offset)
    val_of = {int(i): float(v) for i, v in zip(ids, vals)}
    out[u.id] = dict(
        unit=f"{u.layer}:{u.channel}", query=ex["query"], references=ex["references"],
        ranks=ex["ranks"],
        query_activation=[val_of[int(i)] for i in ex["query"]],
        reference_activations=[[val_of[int(i)] for i in row] for row in ex["references"]])
  write_json(exp.root / "exemplars.json", dict(paths=res.paths, units=out))
  # Save the natural references (and nothing else) of the image sets in use.
  save_set_images(exp, res, "natural refs", lambda u, b: [
      (f"natural_{k}.png", i) for k, i in enumerate(out[u.id]["references"][b])])
  return dict(n_units=len(out))


def save_set_images(exp: Experiment, res, desc: str,
                    images_of: Callable[[Any, int], Iterable[tuple[str, int]]]) -> None:
  """Save the swept images shown in each image set in use, skipping files already there.

  `images_of(unit, image_set)` gives (file name, image id) pairs, written as PNGs under
  `exp.set_dir(unit, image_set)` from `exp.source`, which must be the image source `res` (the
  sweep result) ranked; `desc` labels the progress bar.
  """
  source = exp.source
  if list(source.paths) != list(res.paths):
    raise ValueError("the image source differs from the swept one (paths changed)")
  todo = [(u, b) for u, b, _ in exp.trial_keys()]
  for u, b in progress_lib.bar(todo, desc, enabled=exp.progress):
    d = exp.set_dir(u, b)
    for name, i in images_of(u, b):
      p = d / name
      if not p.exists():
        save_png(p, source.load(int(i)))


def run_featvis(exp: Experiment) -> dict:
  """Feature visualizations (batch 9, and the Mixed condition's batch 4) of every unit."""
  import jax
  from cv_jax import featvis
  c = exp.cfg.featvis
  units = exp.units
  n = max(1, int(c.units_per_call))
  chunks = [units[i:i + n] for i in range(0, len(units), n)]
  jobs = [(tag, batch, ci, ch) for tag, batch in (("9", c.batch), ("4", c.mixed_batch))
          for ci, ch in enumerate(chunks)]
  for i, (tag, batch, ci, chunk) in enumerate(jobs):
    metas = [exp.root / "stimuli" / u.id / f"featvis{tag}.json" for u in chunk]
    if all(m.exists() for m in metas):
      continue
    exp.log(f"[featvis] call {i + 1}/{len(jobs)}: {len(chunk)} units, batch {batch}")
    key = jax.random.fold_in(jax.random.PRNGKey(int(exp.cfg.seed)), 2 * ci + (tag == "4"))
    # render's own bar counts optimisation steps (after a status line while it compiles).
    out = featvis.render(exp.model, [f"{u.layer}:{u.channel}" for u in chunk],
                         featvis_config(exp, batch), key=key, progress=exp.progress)
    for j, (u, meta) in enumerate(zip(chunk, metas)):
      paths = []
      for k in range(batch):
        p = exp.root / "stimuli" / u.id / f"synthetic{tag}_{k}.png"
        save_png(p, out["images"][j, k])
        paths.append(exp.rel(p))
      write_json(meta, dict(paths=paths, activation=np.asarray(out["activation"][j]).tolist(),
                             objective=np.asarray(out["objective"][j]).tolist()))
  return {}


def run_occlusion(exp: Experiment) -> dict:
  """Occlusion maps of every trial's query; the max and min query images."""
  from cv_jax import occlusion
  oc = exp.cfg.occlusion
  ex = read_json(exp.root / "exemplars.json")
  compiled: set[str] = set()
  for u, b, role in progress_lib.bar(exp.trial_keys(), "occlusion", enabled=exp.progress):
    d = exp.set_dir(u, b)
    meta_path = d / "occlusion.json"
    if meta_path.exists():
      continue
    _compiling(exp, "occlusion", u.layer, compiled)
    e = ex["units"][u.id]
    qid = int(e["query"][b])
    img = np.asarray(exp.source.load(qid), np.float32)
    res = occlusion.occlusion_maps(exp.model, img, u.layer, [u.channel], size=oc.size,
                                   stride=oc.stride, fill=oc.fill, chunk=oc.get("chunk"))
    m = np.asarray(res.maps)[..., 0]
    (ri, ci), (rx, cx) = occlusion.extreme_positions(m)
    rows, cols = (np.asarray(s) for s in res.starts)
    pos_min = (int(rows[ri]), int(cols[ci]))
    pos_max = (int(rows[rx]), int(cols[cx]))
    im_max = np.asarray(occlusion.occlude(img, *pos_max, oc.size, fill=oc.fill))
    im_min = np.asarray(occlusion.occlude(img, *pos_min, oc.size, fill=oc.fill))
    files = {}
    for key, im in (("base", img), ("max", im_max), ("min", im_min)):
      p = d / f"query_{key}.png"
      save_png(p, im)
      files[key] = p
    np.save(d / "occlusion_map.npy", m.astype(np.float32))
    png = exp.acts(np.stack([load_png(files[k]) for k in ("base", "max", "min")]), u.layer)
    write_json(meta_path, dict(
        query_id=qid, query_path=ex["paths"][qid], query_rank=int(e["ranks"][b][-1]),
        query_sweep_activation=e["query_activation"][b],
        pos_min=pos_min, pos_max=pos_max, grid=[len(rows), len(cols)],
        activations=dict(base=float(np.asarray(res.base)[0]), min=float(m.min()),
                         max=float(m.max())),
        activations_png=dict(base=float(png[0, u.channel]), max=float(png[1, u.channel]),
                             min=float(png[2, u.channel]))))
  return {}


def run_blur(exp: Experiment) -> dict:
  """Blurred references: each natural reference blurred except its most activating window."""
  from cv_jax import models, occlusion
  bc = exp.cfg.blur
  if "blur" not in exp.cfg.conditions:
    return dict(skipped="blur condition not requested")
  compiled: set[str] = set()
  for u, b, role in progress_lib.bar(exp.trial_keys(), "blur", enabled=exp.progress):
    d = exp.set_dir(u, b)
    meta_path = d / "blur.json"
    if meta_path.exists():
      continue
    _compiling(exp, "blur-window", u.layer, compiled)
    unit = models.Unit(u.layer, u.channel)
    rows = []
    for k in range(exp.cfg.exemplars.n_bins - 1):
      ref = load_png(d / f"natural_{k}.png")
      blurred, win, act = occlusion.blur_reference(
          exp.model, ref, unit, size=exp.cfg.occlusion.size, stride=bc.stride,
          ksize=bc.ksize, sigma=bc.sigma)
      save_png(d / f"blur_{k}.png", np.asarray(blurred))
      rows.append(dict(window=[int(win[0]), int(win[1])], activation=float(act)))
    write_json(meta_path, dict(references=rows))
  return {}


def run_trials(exp: Experiment) -> dict:
  """Trials and tasks: `experiment.json` (validated against the schema) and its schema file."""
  c = exp.cfg
  ex = read_json(exp.root / "exemplars.json")
  conds = list(c.conditions)
  n_nat_mixed = c.exemplars.n_bins - 1 - c.featvis.mixed_batch
  units_doc, trials = [], []
  for u in exp.units:
    entry = dict(id=u.id, unit=f"{u.layer}:{u.channel}", branch=u.branch, layer=u.layer,
                 channel=u.channel, role=u.role, source=u.text, synthetic={},
                 synthetic_activations={})
    for tag in ("9", "4"):
      meta = exp.root / "stimuli" / u.id / f"featvis{tag}.json"
      if meta.exists():
        fm = read_json(meta)
        entry["synthetic"][tag] = fm["paths"]
        entry["synthetic_activations"][tag] = fm["activation"]
    units_doc.append(entry)
  by_id = {u["id"]: u for u in units_doc}
  for u, b, role in exp.trial_keys():
    d = exp.set_dir(u, b)
    om = read_json(d / "occlusion.json")
    e = ex["units"][u.id]
    nat = [exp.rel(d / f"natural_{k}.png") for k in range(c.exemplars.n_bins - 1)]
    refs = {}
    syn9 = by_id[u.id]["synthetic"].get("9", [])
    syn4 = by_id[u.id]["synthetic"].get("4", [])
    if "synthetic" in conds:
      refs["synthetic"] = syn9
    if "natural" in conds:
      refs["natural"] = nat
    if "mixed" in conds:
      # Mixed: the separate batch-4 optimisation + the natural references of the top 5 bins
      # (paper: pure bins 4..8, ranks 21..120), synthetic first.
      refs["mixed"] = syn4 + nat[len(nat) - n_nat_mixed:]
    blur = None
    if "blur" in conds:
      refs["blur"] = [exp.rel(d / f"blur_{k}.png") for k in range(c.exemplars.n_bins - 1)]
      blur = read_json(d / "blur.json")["references"]
    if "none" in conds:
      refs["none"] = []
    t = dict(
        id=trials_lib.trial_id(u.id, b), unit=u.id, image_set=b, role=role,
        query=dict(image_id=om["query_id"], path=om["query_path"], rank=om["query_rank"],
                   sweep_activation=om["query_sweep_activation"]),
        images={k: exp.rel(d / f"query_{k}.png") for k in ("base", "max", "min")},
        correct="max",
        occlusion=dict(min=om["pos_min"], max=om["pos_max"], size=c.occlusion.size,
                       map=exp.rel(d / "occlusion_map.npy"), grid=om["grid"]),
        activations=om["activations"], activations_png=om["activations_png"],
        references=refs,
        natural_references=[dict(image_id=int(i), path=ex["paths"][int(i)], rank=int(r),
                                 activation=a)
                            for i, r, a in zip(e["references"][b], e["ranks"][b][:-1],
                                               e["reference_activations"][b])])
    if blur is not None:
      t["blur"] = blur
    trials.append(t)
  trials_lib.assign_catch_swaps(trials, c.tasks.catch_mode, seed=c.tasks.seed)
  by_trial = {t["id"]: t for t in trials}
  spec_of = {u.id: u for u in exp.units}
  for t in trials:
    if t.get("catch"):
      u = spec_of[t["unit"]]
      a = exp.acts(load_png(exp.root / t["catch"]["min"])[None], u.layer)[0, u.channel]
      t["catch"]["min_activation"] = float(a)
  practice = [t["id"] for t in trials if t["role"] == "practice"]
  n_ref = {k: len(v) for k, v in trials[0]["references"].items()}
  conditions = {k: dict(n_references=schema_lib.N_REFERENCES[k]) for k in conds}
  if "mixed" in conditions:
    conditions["mixed"].update(n_synthetic=c.featvis.mixed_batch, n_natural=n_nat_mixed)
  for k in conditions:
    conditions[k]["n_references"] = n_ref.get(k, conditions[k]["n_references"])
  tasks = trials_lib.make_tasks(
      trials, conds, n_tasks=c.tasks.n_tasks, n_sets=c.n_sets, seed=c.tasks.seed,
      n_synthetic_mixed=c.featvis.mixed_batch, practice=practice,
      n_references={k: v["n_references"] for k, v in conditions.items()})
  import cv_jax
  doc = dict(
      schema=schema_lib.SCHEMA_NAME, schema_version=schema_lib.SCHEMA_VERSION,
      generator=dict(package="cv_jax", version=cv_jax.__version__),
      config=to_plain(c),
      model=dict(name=c.model.name, weights=c.model.get("weights")),
      data=dict(source=c.data.source, n_images=len(ex["paths"])),
      occlusion=dict(size=c.occlusion.size, stride=c.occlusion.stride, fill=c.occlusion.fill,
                     image_size=int(load_png(exp.root / trials[0]["images"]["base"]).shape[0])),
      conditions=conditions, units=units_doc, trials=trials, tasks=tasks)
  del by_trial
  _write_doc(exp, doc)
  schema_lib.write_schema(exp.root / "experiment.schema.json")
  return dict(n_trials=len(trials), n_tasks=len(tasks))


def run_baselines(exp: Experiment) -> dict:
  """The Center, Variance and Saliency baselines' choices on every main trial."""
  doc = exp.load_doc()
  sal_model = get_saliency_model(exp.cfg.saliency)
  trials = [t for t in doc["trials"] if t["role"] == "main"]
  for t in progress_lib.bar(trials, "baselines", enabled=exp.progress):
    img = load_png(exp.root / t["images"]["base"])  # the paper reads query_default.png / 255
    sal = sal_model(img)
    vals = baseline_values(img, t["occlusion"]["min"], t["occlusion"]["max"],
                           t["occlusion"]["size"], saliency_map=sal)
    ok, ch = score(vals), choice(vals)
    t["baselines"] = {b: dict(min=v["min"], max=v["max"], correct=ok[b], choice=ch[b])
                      for b, v in vals.items()}
  doc["saliency_model"] = getattr(sal_model, "name", type(sal_model).__name__)
  _write_doc(exp, doc)
  return {}


def run_report(exp: Experiment) -> dict:
  """Accuracies, Cohen's kappas (`results.json`) and `report/report.html`."""
  doc = exp.load_doc()
  results = report_lib.compute_results(doc, exp.cfg.n_sets)
  doc["results"] = results
  _write_doc(exp, doc)
  report_lib.write_results(exp.root, results)
  path = report_lib.write_report(exp.root, doc, results, report_set=exp.cfg.report_set,
                                 progress=exp.progress)
  return dict(report=exp.rel(path))

# -- summary


# ------------------------------------------------------------------------------ helpers

def sweep_k(exp: Experiment) -> int:
  """Table depth: config.sweep.k, raised to what the 2-AFC selection needs."""
  k = int(exp.cfg.sweep.k)
  if exp.cfg.get("task", "occlusion") == "exemplar_2afc":
    from cv_jax.experiment import exemplar_2afc as x2
    e = exp.cfg.exemplar_2afc
    k = max(k, x2.required_depth(len(exp.source), e.n_references, e.bin_size,
                                 e.query_percentile))
  return k


def sweep_result(exp: Experiment):
  """The sweep stage's `SweepResult`."""
  from cv_jax import sweep
  return sweep.SweepResult.load(exp.root / "sweep")


def featvis_config(exp: Experiment, batch: int):
  """The featvis config of the study's references: the preset, the overrides, `batch`, the seed."""
  from cv_jax import featvis
  c = exp.cfg.featvis
  fc = featvis.get_config(c.preset)
  method = fc.get("method", "fourier")
  if method == "accentuation":
    raise ValueError("featvis.preset=accentuation needs seed images, which the synthetic "
                     "condition does not have; use zimmermann2021, lucid, lucent, maco or dgn_am")
  if method == "maco":
    fc.size = 224  # the study's image size (MACO's own default canvas is 512)
  for key, value in c.overrides.items():
    fc[key] = value
  fc.batch = batch
  fc.seed = int(exp.cfg.seed)
  return fc


def _compiling(exp, what: str, layer: str, compiled: set[str]) -> None:
  """A status line the first time a stage's loop reaches a layer (its program compiles)."""
  if exp.progress and layer not in compiled:
    progress_lib.status(f"compiling the {what} program for {layer} ...")
  compiled.add(layer)


def _write_doc(exp, doc) -> None:
  schema_lib.validate(to_plain(doc), exp.root)
  write_json(exp.root / "experiment.json", doc)


STAGES = (
    Stage("sweep", run_sweep, sweep_settings),
    Stage("exemplars", run_exemplars, exemplars_settings),
    Stage("featvis", run_featvis, featvis_settings),
    Stage("occlusion", run_occlusion, occlusion_settings),
    Stage("blur", run_blur, blur_settings),
    Stage("trials", run_trials, trials_settings),
    Stage("baselines", run_baselines, baselines_settings),
    Stage("report", run_report, report_settings),
)
