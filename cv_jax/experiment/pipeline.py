"""The whole study as resumable stages: sweep -> exemplars -> featvis -> occlusion -> blur ->
trials -> baselines -> report (`run(config)`; CLI `python -m cv_jax.experiment`).

Every stage writes its outputs under `config.workdir` and a marker `stages/<stage>.json` holding
a fingerprint of the settings it depends on. A stage whose marker exists with the same
fingerprint is skipped (resume); a marker with a different fingerprint is an error (the folder
was made with other settings). The featvis, occlusion and blur stages also resume per item
(per unit chunk / per trial), so an interrupted run restarts where it stopped and produces the
same files as an uninterrupted one.

Folder layout (paths in experiment.json are relative to the workdir):
  sweep/                         SweepResult (sweep_result.{npz,json})
  exemplars.json                 per unit: query / reference image ids, ranks, paths
  stimuli/<unit>/synthetic9_{k}.png, synthetic4_{k}.png, featvis.json
  stimuli/<unit>/set{b}/query_{base,max,min}.png, natural_{k}.png, blur_{k}.png,
                        occlusion_map.npy, occlusion.json, blur.json
  experiment.json, experiment.schema.json, results.json, report/report.html (+ PNGs)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import numpy as np

from cv_jax.experiment import report as report_lib
from cv_jax.experiment import schema as schema_lib
from cv_jax.experiment import trials as trials_lib
from cv_jax.experiment.baselines import baseline_values, choice, get_saliency_model, score
from cv_jax import progress as progress_lib
from cv_jax.data.png import load_png, save_png

STAGES = ("sweep", "exemplars", "featvis", "occlusion", "blur", "trials", "baselines", "report")
STAGES_2AFC = ("sweep", "exemplars_2afc", "featvis_2afc", "trials_2afc", "report_2afc")
"""Stages of `task = "exemplar_2afc"` (cv_jax.experiment.exemplar_2afc)."""
TASKS = {"occlusion": STAGES, "exemplar_2afc": STAGES_2AFC}


def stages_for(cfg) -> tuple[str, ...]:
  """The stages of the config's task (`cfg.task`, default "occlusion")."""
  task = cfg.get("task", "occlusion") or "occlusion"
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
  return TASKS[task]


# ------------------------------------------------------------------------------ helpers

def _to_plain(x):
  """ConfigDict / tuples / numpy scalars -> JSON-able plain Python."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, dict):
    return {str(k): _to_plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_plain(v) for v in x]
  if isinstance(x, np.ndarray):
    return _to_plain(x.tolist())
  if isinstance(x, np.generic):
    return _to_plain(x.item())
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def _fingerprint(obj) -> str:
  return hashlib.sha1(json.dumps(_to_plain(obj), sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(_to_plain(obj), indent=1) + "\n")
  os.replace(tmp, path)


def _read_json(path: pathlib.Path):
  return json.loads(path.read_text())


def _bar(iterable, desc: str, total: int | None = None, enabled: bool = True):
  if not enabled:
    return iterable
  from tqdm.auto import tqdm
  return tqdm(iterable, desc=desc, total=total, unit="item")


@dataclasses.dataclass
class UnitSpec:
  """One unit of the study: its id, address strings, resolved layer/channel, trials' sets."""
  id: str
  text: str
  layer: str
  channel: int
  branch: str | None
  role: str
  sets: dict[int, str]  # image set -> trial role ("main" / "catch" / "practice")


def parse_unit_specs(model, cfg) -> list[UnitSpec]:
  """The units of the config: `units` (main, image sets 0..n_sets-1), `catch` and `practice`
  ("unit@set" strings). A unit may appear in several lists at different image sets."""
  from cv_jax import models
  specs: dict[str, UnitSpec] = {}

  def add(text: str, role: str, sets: Sequence[int]):
    u = models.Unit.parse(text, model)
    try:
      branch = u.branch_str(model)
    except ValueError:
      branch = None
    uid = trials_lib.unit_id(branch or str(u))
    if uid not in specs:
      specs[uid] = UnitSpec(uid, str(text), u.layer, u.channel, branch, role, {})
    sp = specs[uid]
    if (sp.layer, sp.channel) != (u.layer, u.channel):
      raise ValueError(f"unit ids collide: {text!r} and {sp.text!r}")
    for b in sets:
      if b in sp.sets:
        raise ValueError(f"unit {text!r} is used twice at image set {b} ({sp.sets[b]} and {role})")
      sp.sets[int(b)] = role

  def split(entry: str) -> tuple[str, int]:
    text, sep, b = str(entry).rpartition("@")
    if not sep or not b.isdigit():
      raise ValueError(f"catch/practice entries are 'unit@image_set', got {entry!r}")
    return text, int(b)

  if not list(cfg.units):
    raise ValueError("config.units is empty")
  for text in cfg.units:
    add(text, "main", range(cfg.n_sets))
  for role in ("catch", "practice"):
    for entry in cfg[role]:
      text, b = split(entry)
      add(text, role, [b])
  if cfg.get("task", "occlusion") == "exemplar_2afc":
    n_sets, where = cfg.exemplar_2afc.bin_size, "exemplar_2afc.bin_size"
  else:
    n_sets, where = cfg.exemplars.bin_size, "exemplars.bin_size"
  for sp in specs.values():
    for b in sp.sets:
      if b >= n_sets:
        raise ValueError(f"unit {sp.text} uses image set {b}, but there are only "
                         f"{n_sets} ({where})")
  return list(specs.values())


class ActivationFn:
  """Spatial-mean activations of one layer's channels, jitted once per layer."""

  _cache: dict[int, "ActivationFn"] = {}

  @classmethod
  def for_model(cls, model) -> "ActivationFn":
    """One shared instance per model object (keeps the compiled functions)."""
    hit = cls._cache.get(id(model))
    if hit is None or hit.model is not model:
      hit = cls._cache[id(model)] = cls(model)
    return hit

  def __init__(self, model):
    self.model = model
    self.params = model.params()
    self._fns: dict[str, Callable] = {}

  def __call__(self, images, layer: str) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    if layer not in self._fns:
      model = self.model

      def f(p, x):
        return model.apply(p, x, (layer,))[layer].mean(axis=(1, 2))
      self._fns[layer] = jax.jit(f)
    x = jnp.asarray(np.asarray(images, np.float32))
    return np.asarray(self._fns[layer](self.params, x))


# ------------------------------------------------------------------------------ the run

class Experiment:
  """A configured run over a workdir; `run()` executes the stages that are not done yet."""

  def __init__(self, cfg, *, progress: bool = True, log: Callable[[str], None] = print,
               model=None):
    self.cfg = cfg
    self.root = pathlib.Path(cfg.workdir)
    self.progress = progress
    self.log = log
    self._model = model  # an already loaded network matching cfg.model (optional)
    self._source = None
    self._acts = None
    self.timings: dict[str, tuple[str, float]] = {}

  # -- lazily built heavy objects
  @property
  def model(self):
    if self._model is None:
      from cv_jax import models
      kw = {}
      if self.cfg.model.get("random_init") is not None:
        kw["random_init"] = int(self.cfg.model.random_init)
      else:
        kw["weights"] = self.cfg.model.weights or None
      self._model = models.load(self.cfg.model.name, **kw)
    return self._model

  @property
  def source(self):
    if self._source is None:
      from cv_jax.data import open_source
      d = self.cfg.data
      self._source = open_source(d.source, max_images=d.get("max_images"),
                                 subset_seed=d.get("subset_seed"))
    return self._source

  @property
  def acts(self) -> ActivationFn:
    if self._acts is None:
      self._acts = ActivationFn.for_model(self.model)
    return self._acts

  @property
  def units(self) -> list[UnitSpec]:
    if not hasattr(self, "_units"):
      self._units = parse_unit_specs(self.model, self.cfg)
    return self._units

  def trial_keys(self) -> list[tuple[UnitSpec, int, str]]:
    """(unit, image set, role) of every trial, main trials first (set-major), then the rest."""
    out = []
    for b in range(self.cfg.n_sets):
      out += [(u, b, "main") for u in self.units if u.sets.get(b) == "main"]
    for u in self.units:
      out += [(u, b, r) for b, r in sorted(u.sets.items()) if r != "main"]
    return out

  def set_dir(self, u: UnitSpec, b: int) -> pathlib.Path:
    return self.root / "stimuli" / u.id / f"set{b:02d}"

  def rel(self, path: pathlib.Path) -> str:
    return path.relative_to(self.root).as_posix()

  # -- stage bookkeeping
  def _stage_settings(self, name: str) -> dict:
    c = self.cfg
    model = dict(name=c.model.name, weights=c.model.get("weights"),
                 random_init=c.model.get("random_init"))
    units = [(u.id, u.layer, u.channel, sorted(u.sets.items())) for u in self.units]
    base = dict(model=model, data=_to_plain(c.data))
    if name == "sweep":
      extra = {"k": self._sweep_k()} if c.get("task", "occlusion") == "exemplar_2afc" else {}
      return dict(base, sweep=_to_plain(c.sweep), layers=sorted({u.layer for u in self.units}),
                  **extra)
    if name == "exemplars_2afc":
      return dict(base, sweep=_to_plain(c.sweep), exemplar_2afc=_to_plain(c.exemplar_2afc),
                  units=units)
    if name == "featvis_2afc":
      return dict(model=model, featvis=_to_plain(c.featvis), seed=c.seed,
                  n_references=c.exemplar_2afc.n_references, conditions=list(c.conditions),
                  units=[(u.id, u.layer, u.channel) for u in self.units])
    if name == "trials_2afc":
      return dict(self._stage_settings("exemplars_2afc"), tasks=_to_plain(c.tasks),
                  conditions=list(c.conditions), featvis=self._stage_settings("featvis_2afc"))
    if name == "report_2afc":
      return dict(self._stage_settings("trials_2afc"), report_set=c.report_set)
    if name == "exemplars":
      return dict(base, sweep=_to_plain(c.sweep), exemplars=_to_plain(c.exemplars), units=units)
    if name == "featvis":
      return dict(model=model, featvis=_to_plain(c.featvis), seed=c.seed,
                  units=[(u.id, u.layer, u.channel) for u in self.units])
    if name == "occlusion":
      return dict(base, exemplars=_to_plain(c.exemplars), occlusion=_to_plain(c.occlusion),
                  units=units)
    if name == "blur":
      return dict(base, exemplars=_to_plain(c.exemplars), blur=_to_plain(c.blur),
                  occlusion_size=c.occlusion.size, units=units)
    if name == "trials":
      return dict(base, units=units, tasks=_to_plain(c.tasks), conditions=list(c.conditions),
                  occlusion=_to_plain(c.occlusion), blur=_to_plain(c.blur),
                  featvis=_to_plain(c.featvis), exemplars=_to_plain(c.exemplars))
    if name == "baselines":
      return dict(self._stage_settings("trials"), saliency=c.saliency)
    if name == "report":
      return dict(self._stage_settings("baselines"), report_set=c.report_set)
    raise ValueError(name)

  def _done(self, name: str) -> bool:
    marker = self.root / "stages" / f"{name}.json"
    if not marker.exists():
      return False
    want = _fingerprint(self._stage_settings(name))
    got = _read_json(marker).get("fingerprint")
    if got != want:
      raise ValueError(
          f"{self.root} holds a '{name}' stage made with different settings (fingerprint {got} "
          f"!= {want}); use a new --workdir, or delete {marker} and that stage's outputs")
    return True

  def _mark(self, name: str, seconds: float, **extra) -> None:
    _write_json(self.root / "stages" / f"{name}.json",
                dict(fingerprint=_fingerprint(self._stage_settings(name)), seconds=seconds,
                     settings=self._stage_settings(name), **extra))

  def run(self, stages: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the given stages (default: all of the config's task) in order, skipping finished
    ones; returns the summary dict."""
    valid = stages_for(self.cfg)
    stages = valid if stages is None else tuple(stages)
    unknown = [s for s in stages if s not in valid]
    if unknown:
      raise ValueError(f"unknown stage {unknown[0]!r} for task "
                       f"{self.cfg.get('task', 'occlusion')}; stages: {', '.join(valid)}")
    self.check_inputs()
    self.root.mkdir(parents=True, exist_ok=True)
    _write_json(self.root / "config.json", self.cfg)
    for name in stages:
      if self._done(name):
        self.timings[name] = ("skipped (done)", 0.0)
        self.log(f"[{name}] already done, skipped")
        continue
      self.log(f"[{name}] running")
      t0 = time.time()
      extra = getattr(self, f"stage_{name}")() or {}
      dt = time.time() - t0
      self._mark(name, dt, **extra)
      self.timings[name] = ("ran", dt)
    return self.summary()

  def check_inputs(self) -> None:
    """Load the model, parse the units and open the image source now, so that a bad input
    fails before any stage starts (each raises a one-line ValueError/WeightsError)."""
    _ = self.source, self.model, self.units

  # -- stages
  def _sweep_k(self) -> int:
    """Table depth: config.sweep.k, raised to what the 2-AFC selection needs."""
    k = int(self.cfg.sweep.k)
    if self.cfg.get("task", "occlusion") == "exemplar_2afc":
      from cv_jax.experiment import exemplar_2afc as x2
      e = self.cfg.exemplar_2afc
      k = max(k, x2.required_depth(len(self.source), e.n_references, e.bin_size,
                                   e.query_percentile))
    return k

  def stage_sweep(self):
    from cv_jax import sweep
    c = self.cfg.sweep
    layers = sorted({u.layer for u in self.units})
    res = sweep.run(self.model, self.source, layers, k=self._sweep_k(), batch_size=c.batch_size,
                    micro_batch=c.micro_batch, workdir=self.root / "sweep_work",
                    progress=self.progress)
    res.save(self.root / "sweep")
    return dict(n_images=len(res.paths), failed=len(res.failed))

  def _sweep_result(self):
    from cv_jax import sweep
    return sweep.SweepResult.load(self.root / "sweep")

  def stage_exemplars(self):
    from cv_jax import sweep
    res = self._sweep_result()
    e = self.cfg.exemplars
    out = {}
    for u in self.units:
      ids, vals = res.unit(f"{u.layer}:{u.channel}")
      ex = sweep.select_exemplars(ids, n_bins=e.n_bins, bin_size=e.bin_size,
                                  seed=u.channel + e.seed_offset)
      val_of = {int(i): float(v) for i, v in zip(ids, vals)}
      out[u.id] = dict(
          unit=f"{u.layer}:{u.channel}", query=ex["query"], references=ex["references"],
          ranks=ex["ranks"],
          query_activation=[val_of[int(i)] for i in ex["query"]],
          reference_activations=[[val_of[int(i)] for i in row] for row in ex["references"]])
    _write_json(self.root / "exemplars.json", dict(paths=res.paths, units=out))
    # Save the natural references (and nothing else) of the image sets in use.
    source = self.source
    if list(source.paths) != list(res.paths):
      raise ValueError("the image source differs from the swept one (paths changed)")
    todo = [(u, b) for u, b, _ in self.trial_keys()]
    for u, b in _bar(todo, "natural refs", enabled=self.progress):
      d = self.set_dir(u, b)
      for k, i in enumerate(out[u.id]["references"][b]):
        p = d / f"natural_{k}.png"
        if not p.exists():
          save_png(p, source.load(int(i)))
    return dict(n_units=len(out))

  def _featvis_config(self, batch: int):
    from cv_jax import featvis
    c = self.cfg.featvis
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
    fc.seed = int(self.cfg.seed)
    return fc

  def stage_featvis(self):
    import jax
    from cv_jax import featvis
    c = self.cfg.featvis
    units = self.units
    n = max(1, int(c.units_per_call))
    chunks = [units[i:i + n] for i in range(0, len(units), n)]
    jobs = [(tag, batch, ci, ch) for tag, batch in (("9", c.batch), ("4", c.mixed_batch))
            for ci, ch in enumerate(chunks)]
    for i, (tag, batch, ci, chunk) in enumerate(jobs):
      metas = [self.root / "stimuli" / u.id / f"featvis{tag}.json" for u in chunk]
      if all(m.exists() for m in metas):
        continue
      self.log(f"[featvis] call {i + 1}/{len(jobs)}: {len(chunk)} units, batch {batch}")
      key = jax.random.fold_in(jax.random.PRNGKey(int(self.cfg.seed)), 2 * ci + (tag == "4"))
      # render's own bar counts optimisation steps (after a status line while it compiles).
      out = featvis.render(self.model, [f"{u.layer}:{u.channel}" for u in chunk],
                           self._featvis_config(batch), key=key, progress=self.progress)
      for j, (u, meta) in enumerate(zip(chunk, metas)):
        paths = []
        for k in range(batch):
          p = self.root / "stimuli" / u.id / f"synthetic{tag}_{k}.png"
          save_png(p, out["images"][j, k])
          paths.append(self.rel(p))
        _write_json(meta, dict(paths=paths, activation=np.asarray(out["activation"][j]).tolist(),
                               objective=np.asarray(out["objective"][j]).tolist()))
    return {}

  def _compiling(self, what: str, layer: str, compiled: set[str]) -> None:
    """A status line the first time a stage's loop reaches a layer (its program compiles)."""
    if self.progress and layer not in compiled:
      progress_lib.status(f"compiling the {what} program for {layer} ...")
    compiled.add(layer)

  def stage_occlusion(self):
    from cv_jax import occlusion
    oc = self.cfg.occlusion
    ex = _read_json(self.root / "exemplars.json")
    compiled: set[str] = set()
    for u, b, role in _bar(self.trial_keys(), "occlusion", enabled=self.progress):
      d = self.set_dir(u, b)
      meta_path = d / "occlusion.json"
      if meta_path.exists():
        continue
      self._compiling("occlusion", u.layer, compiled)
      e = ex["units"][u.id]
      qid = int(e["query"][b])
      img = np.asarray(self.source.load(qid), np.float32)
      res = occlusion.occlusion_maps(self.model, img, u.layer, [u.channel], size=oc.size,
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
      png = self.acts(np.stack([load_png(files[k]) for k in ("base", "max", "min")]), u.layer)
      _write_json(meta_path, dict(
          query_id=qid, query_path=ex["paths"][qid], query_rank=int(e["ranks"][b][-1]),
          query_sweep_activation=e["query_activation"][b],
          pos_min=pos_min, pos_max=pos_max, grid=[len(rows), len(cols)],
          activations=dict(base=float(np.asarray(res.base)[0]), min=float(m.min()),
                           max=float(m.max())),
          activations_png=dict(base=float(png[0, u.channel]), max=float(png[1, u.channel]),
                               min=float(png[2, u.channel]))))
    return {}

  def stage_blur(self):
    from cv_jax import models, occlusion
    bc = self.cfg.blur
    if "blur" not in self.cfg.conditions:
      return dict(skipped="blur condition not requested")
    compiled: set[str] = set()
    for u, b, role in _bar(self.trial_keys(), "blur", enabled=self.progress):
      d = self.set_dir(u, b)
      meta_path = d / "blur.json"
      if meta_path.exists():
        continue
      self._compiling("blur-window", u.layer, compiled)
      unit = models.Unit(u.layer, u.channel)
      rows = []
      for k in range(self.cfg.exemplars.n_bins - 1):
        ref = load_png(d / f"natural_{k}.png")
        blurred, win, act = occlusion.blur_reference(
            self.model, ref, unit, size=self.cfg.occlusion.size, stride=bc.stride,
            ksize=bc.ksize, sigma=bc.sigma)
        save_png(d / f"blur_{k}.png", np.asarray(blurred))
        rows.append(dict(window=[int(win[0]), int(win[1])], activation=float(act)))
      _write_json(meta_path, dict(references=rows))
    return {}

  def stage_trials(self):
    c = self.cfg
    ex = _read_json(self.root / "exemplars.json")
    conds = list(c.conditions)
    n_nat_mixed = c.exemplars.n_bins - 1 - c.featvis.mixed_batch
    units_doc, trials = [], []
    for u in self.units:
      entry = dict(id=u.id, unit=f"{u.layer}:{u.channel}", branch=u.branch, layer=u.layer,
                   channel=u.channel, role=u.role, source=u.text, synthetic={},
                   synthetic_activations={})
      for tag in ("9", "4"):
        meta = self.root / "stimuli" / u.id / f"featvis{tag}.json"
        if meta.exists():
          fm = _read_json(meta)
          entry["synthetic"][tag] = fm["paths"]
          entry["synthetic_activations"][tag] = fm["activation"]
      units_doc.append(entry)
    by_id = {u["id"]: u for u in units_doc}
    for u, b, role in self.trial_keys():
      d = self.set_dir(u, b)
      om = _read_json(d / "occlusion.json")
      e = ex["units"][u.id]
      nat = [self.rel(d / f"natural_{k}.png") for k in range(c.exemplars.n_bins - 1)]
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
        refs["blur"] = [self.rel(d / f"blur_{k}.png") for k in range(c.exemplars.n_bins - 1)]
        blur = _read_json(d / "blur.json")["references"]
      if "none" in conds:
        refs["none"] = []
      t = dict(
          id=trials_lib.trial_id(u.id, b), unit=u.id, image_set=b, role=role,
          query=dict(image_id=om["query_id"], path=om["query_path"], rank=om["query_rank"],
                     sweep_activation=om["query_sweep_activation"]),
          images={k: self.rel(d / f"query_{k}.png") for k in ("base", "max", "min")},
          correct="max",
          occlusion=dict(min=om["pos_min"], max=om["pos_max"], size=c.occlusion.size,
                         map=self.rel(d / "occlusion_map.npy"), grid=om["grid"]),
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
    spec_of = {u.id: u for u in self.units}
    for t in trials:
      if t.get("catch"):
        u = spec_of[t["unit"]]
        a = self.acts(load_png(self.root / t["catch"]["min"])[None], u.layer)[0, u.channel]
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
        config=_to_plain(c),
        model=dict(name=c.model.name, weights=c.model.get("weights")),
        data=dict(source=c.data.source, n_images=len(ex["paths"])),
        occlusion=dict(size=c.occlusion.size, stride=c.occlusion.stride, fill=c.occlusion.fill,
                       image_size=int(load_png(self.root / trials[0]["images"]["base"]).shape[0])),
        conditions=conditions, units=units_doc, trials=trials, tasks=tasks)
    del by_trial
    self._write_doc(doc)
    schema_lib.write_schema(self.root / "experiment.schema.json")
    return dict(n_trials=len(trials), n_tasks=len(tasks))

  def _write_doc(self, doc) -> None:
    schema_lib.validate(_to_plain(doc), self.root)
    _write_json(self.root / "experiment.json", doc)

  def load_doc(self) -> dict:
    return _read_json(self.root / "experiment.json")

  def stage_baselines(self):
    doc = self.load_doc()
    sal_model = get_saliency_model(self.cfg.saliency)
    trials = [t for t in doc["trials"] if t["role"] == "main"]
    for t in _bar(trials, "baselines", enabled=self.progress):
      img = load_png(self.root / t["images"]["base"])  # the paper reads query_default.png / 255
      sal = sal_model(img)
      vals = baseline_values(img, t["occlusion"]["min"], t["occlusion"]["max"],
                             t["occlusion"]["size"], saliency_map=sal)
      ok, ch = score(vals), choice(vals)
      t["baselines"] = {b: dict(min=v["min"], max=v["max"], correct=ok[b], choice=ch[b])
                        for b, v in vals.items()}
    doc["saliency_model"] = getattr(sal_model, "name", type(sal_model).__name__)
    self._write_doc(doc)
    return {}

  def stage_report(self):
    doc = self.load_doc()
    results = report_lib.compute_results(doc, self.cfg.n_sets)
    doc["results"] = results
    self._write_doc(doc)
    report_lib.write_results(self.root, results)
    path = report_lib.write_report(self.root, doc, results, report_set=self.cfg.report_set,
                                   progress=self.progress)
    return dict(report=self.rel(path))

  # -- file helpers for stage modules, which must not import this module (no import circle)
  save_png = staticmethod(save_png)
  load_png = staticmethod(load_png)
  write_json = staticmethod(_write_json)
  read_json = staticmethod(_read_json)
  to_plain = staticmethod(_to_plain)

  def bar(self, iterable, desc: str):
    """A progress bar over `iterable` when progress is on."""
    return _bar(iterable, desc, enabled=self.progress)

  # -- the 2-AFC exemplar task (cv_jax.experiment.exemplar_2afc); stage bodies in stages_2afc
  def stage_exemplars_2afc(self):
    from cv_jax.experiment import stages_2afc
    return stages_2afc.exemplars(self)

  def stage_featvis_2afc(self):
    from cv_jax.experiment import stages_2afc
    return stages_2afc.featvis(self)

  def stage_trials_2afc(self):
    from cv_jax.experiment import stages_2afc
    return stages_2afc.trials(self)

  def stage_report_2afc(self):
    from cv_jax.experiment import stages_2afc
    return stages_2afc.report(self)

  # -- summary
  def summary(self) -> dict[str, Any]:
    out: dict[str, Any] = dict(workdir=str(self.root), stages=dict(self.timings))
    rp = self.root / "results.json"
    if rp.exists():
      out["results"] = _read_json(rp)
    if (self.root / "experiment.json").exists():
      doc = self.load_doc()
      out["n_trials"] = len(doc["trials"])
      out["n_tasks"] = len(doc["tasks"])
    return out


def format_summary(summary: dict[str, Any]) -> str:
  """Plain-text summary: stage times, counts, accuracies, kappas beside the paper's."""
  lines = [f"workdir: {summary['workdir']}", "stages:"]
  for name, (status, sec) in summary["stages"].items():
    lines.append(f"  {name:<10} {status:<16} {sec:8.1f} s")
  if "n_trials" in summary:
    lines.append(f"trials: {summary['n_trials']}, tasks: {summary['n_tasks']}")
  res = summary.get("results")
  if res:
    lines.append(f"baseline accuracy over {res['n_units']} units x {res['n_sets']} image sets "
                 f"(mean ± 2 SEM):")
    for b, v in res["accuracy"].items():
      lines.append(f"  {report_lib.LABELS[b]:<24} {v['mean'] * 100:5.1f} ± {v['sem2'] * 100:4.1f} %")
    k = res.get("kappa")
    if k:
      lines.append("Cohen's kappa x100 (this run | paper):")
      names = k["names"]
      for (a, b), (m, e) in report_lib.PAPER_KAPPA.items():
        for a2 in ([a, "center_published"] if a == "center" else [a]):
          if a2 in names and b in names:
            i, j = names.index(a2), names.index(b)
            ours = k["mean100"][i][j]
            ours = "nan" if ours is None else f"{ours} ± {k['sem2_100'][i][j]}"
            lines.append(f"  {report_lib.LABELS[a2] + ' – ' + report_lib.LABELS[b]:<36} "
                         f"{ours:>10} | {m} ± {e}")
    lines.append(f"report: {pathlib.Path(summary['workdir']) / 'report' / 'report.html'}")
  return "\n".join(lines)


def run(cfg, *, stages: Sequence[str] | None = None, progress: bool = True,
        log: Callable[[str], None] = print, model=None) -> dict[str, Any]:
  """Run (or resume) the experiment described by `cfg` (configs/experiment.py).

  `model`: an already loaded network for cfg.model (saves loading it again), else loaded.
  """
  return Experiment(cfg, progress=progress, log=log, model=model).run(stages)
