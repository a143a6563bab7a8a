"""The whole study as resumable stages: sweep -> exemplars -> featvis -> occlusion -> blur ->
trials -> baselines -> report (`run(config)`; CLI `cv-jax experiment`).

The stages themselves, and the settings each depends on, are `cv_jax.experiment.stages`; this
module holds the run around them: the units, the lazily built model and image source, the
markers, fingerprints and resume, and the summary.

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
import pathlib
import time
from typing import Any, Callable, Sequence

import numpy as np

from cv_jax.experiment import report as report_lib
from cv_jax.experiment import stages as stages_lib
from cv_jax.experiment import stages_2afc
from cv_jax.experiment import trials as trials_lib
from cv_jax.experiment.files import fingerprint, read_json, write_json

STAGES = tuple(s.name for s in stages_lib.STAGES)
STAGES_2AFC = ("sweep",) + tuple(s.name for s in stages_2afc.STAGES)
"""Stages of `task = "exemplar_2afc"` (cv_jax.experiment.exemplar_2afc)."""
TASKS = {"occlusion": STAGES, "exemplar_2afc": STAGES_2AFC}
_STAGE = {s.name: s for s in stages_lib.STAGES + stages_2afc.STAGES}


def stages_for(cfg) -> tuple[str, ...]:
  """The stages of the config's task (`cfg.task`, default "occlusion")."""
  task = cfg.get("task", "occlusion") or "occlusion"
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
  return TASKS[task]


# ------------------------------------------------------------------------------ units

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

  @classmethod
  def for_model(cls, model) -> ActivationFn:
    """One shared instance per model object, kept on it (`Network.program`)."""
    return model.program(("experiment activations",), lambda: cls(model))

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
    return _STAGE[name].settings(self)

  def _done(self, name: str) -> bool:
    marker = self.root / "stages" / f"{name}.json"
    if not marker.exists():
      return False
    want = fingerprint(self._stage_settings(name))
    got = read_json(marker).get("fingerprint")
    if got != want:
      raise ValueError(
          f"{self.root} holds a '{name}' stage made with different settings (fingerprint {got} "
          f"!= {want}); use a new --workdir, or delete {marker} and that stage's outputs")
    return True

  def _mark(self, name: str, seconds: float, **extra) -> None:
    write_json(self.root / "stages" / f"{name}.json",
                dict(fingerprint=fingerprint(self._stage_settings(name)), seconds=seconds,
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
    write_json(self.root / "config.json", self.cfg)
    for name in stages:
      if self._done(name):
        self.timings[name] = ("skipped (done)", 0.0)
        self.log(f"[{name}] already done, skipped")
        continue
      self.log(f"[{name}] running")
      t0 = time.time()
      extra = _STAGE[name].run(self) or {}
      dt = time.time() - t0
      self._mark(name, dt, **extra)
      self.timings[name] = ("ran", dt)
    return self.summary()

  def check_inputs(self) -> None:
    """Load the model, parse the units and open the image source now, so that a bad input
    fails before any stage starts (each raises a one-line ValueError/WeightsError)."""
    _ = self.source, self.model, self.units

  def load_doc(self) -> dict:
    """The run's `experiment.json` (after the trials stage)."""
    return read_json(self.root / "experiment.json")

  # -- summary
  def summary(self) -> dict[str, Any]:
    out: dict[str, Any] = dict(workdir=str(self.root), stages=dict(self.timings))
    rp = self.root / "results.json"
    if rp.exists():
      out["results"] = read_json(rp)
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
