"""The optimisation loop: many units in one jit-compiled program.

`render(model, units, config)` optimises one image batch per unit (all units in one program,
units from different layers allowed), the Lucid way: FFT + decorrelated colour
parameterisation, random transforms each step, Adam (any optax optimiser), objective
`mean_b a_u(x_b) - w · diversity` per unit, ReLU gradient override, forward pass truncated at
the deepest layer needed.

Compilation and progress: the step is traced once into `advance(state, start, stop)`, a
`lax.fori_loop` with dynamic bounds compiled once per (model, unit layers, config shape). The
host calls it once per chunk of steps (chunk boundaries at the snapshot thresholds and, with
`progress=True`, about 50 chunks for the tqdm bar); nothing crosses to the host inside a chunk
and no `jax.debug.callback` is used. With `progress=False` there is one call per threshold.

Determinism and batching: for a key, each unit's initial spectrum comes from
`fold_in(init_key, crc32(str(unit)))` and the transform draws of step i from
`fold_in(transform_key, i)`, shared by every image (as Lucid shares one draw across its batch).
A unit therefore gets the same images whether it is rendered alone or with others.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cv_jax import models
from cv_jax.featvis import objectives as obj_lib
from cv_jax.featvis import param as param_lib
from cv_jax.featvis import transform as tr
from cv_jax.featvis.driver import freeze_config as _freeze
from cv_jax.featvis.driver import make_optimizer, unit_key
from cv_jax.progress import bar as progress_bar, status


def _default_config():
  from cv_jax.featvis.config import get_config
  return get_config("zimmermann2021")


def parse_units(model, units) -> list:
  """Units as `models.Unit` (strings "layer:n" / "block/branch:n" are parsed); Objectives pass."""
  if isinstance(units, (str, models.Unit, obj_lib.Objective)):
    units = [units]
  out = []
  for u in units:
    if isinstance(u, obj_lib.Objective):
      out.append(u)
    else:
      out.append(models.Unit.parse(u, model))
  if not out:
    raise ValueError("no units given")
  return out


def make_pipeline(cfg) -> tr.Pipeline:
  """The transform pipeline of a config (`mode`, `transforms` spec)."""
  return tr.from_spec(cfg.transforms, cfg.mode)


def make_param(cfg) -> param_lib.ImageParam:
  """The image parameterisation of a config: canvas = size + 2·pad."""
  return param_lib.image_param(cfg.size + 2 * cfg.pad, batch=cfg.batch, fft=cfg.fft,
                               decorrelate=cfg.decorrelate, sigmoid=cfg.sigmoid, sd=cfg.sd,
                               decay_power=cfg.decay_power, flavor=cfg.mode)


MAX_PASSES = 9  # network passes per step with `micro_batch` (compile time grows with them)


@dataclasses.dataclass
class Engine:
  """Compiled pieces for one (model, unit layers, config) combination."""
  model: Any
  slots: tuple  # per unit: ("unit", layer) or ("objective", Objective)
  cfg: Any
  optimizer: optax.GradientTransformation

  def __post_init__(self):
    cfg = self.cfg
    self.param = make_param(cfg)
    self.pipeline = make_pipeline(cfg)
    self.B = cfg.batch
    self.U = len(self.slots)
    layers = set()
    for kind, val in self.slots:
      if kind == "unit":
        layers.add(val)
        if cfg.diversity:
          layers.add(cfg.get("diversity_layer") or val)
      else:
        layers |= set(val.layers)
    self.layers = tuple(sorted(l for l in layers if l != "input"))
    self.unit_layers = tuple(sorted({v for k, v in self.slots if k == "unit"}))
    self.step = self._make_step()
    self.advance = jax.jit(self._advance)
    self.images = jax.jit(self._images)
    self.evaluate = jax.jit(self._evaluate)
    self.compiled = False  # set once `advance` has run (compiled) for these shapes

  # --- pure functions -------------------------------------------------------------------------
  def _images(self, params):
    return jax.vmap(self.param)(params)  # (U, B, H, W, 3)

  def _tail(self, mparams, idx, step):
    """tail(x, imgs): model on the transformed batch x, -(Σ_u objective_u) and aux."""
    cfg, B = self.cfg, self.B

    def tail(x, imgs):
      acts = self._network(mparams, x, step) if self.layers else {}
      total = jnp.zeros((), jnp.float32)
      per, divs = [], []
      for u, (kind, val) in enumerate(self.slots):
        sl = slice(u * B, (u + 1) * B)
        if kind == "unit":
          a = acts[val][sl]
          ch = jnp.mean(jnp.take(a, idx[u], axis=-1), axis=(1, 2))
          total = total + jnp.mean(ch)
          per.append(ch)
          if cfg.diversity:
            d = obj_lib.diversity_value(acts[cfg.get("diversity_layer") or val][sl])
            total = total - cfg.diversity * d
            divs.append(d)
          else:
            divs.append(jnp.zeros((), jnp.float32))
        else:
          def T(name, sl=sl, u=u):
            return imgs[u] if name == "input" else acts[name][sl]
          v = val(T)
          total = total + v
          per.append(jnp.full((B,), jnp.nan, jnp.float32))
          divs.append(jnp.zeros((), jnp.float32))
      return -total, (jnp.stack(per), jnp.stack(divs))
    return tail

  def _network(self, mparams, x, step):
    """The layers' activations of the transformed batch x: on CPU in passes of
    `config.micro_batch` rows (at most `MAX_PASSES`); rows are independent, so the numbers
    are the one-pass numbers up to float32 round-off."""
    m = int(self.cfg.get("micro_batch", 0) or 0)
    run = lambda v: self.model.apply(mparams, v, self.layers, relu=self.cfg.relu, step=step)
    if not m or m >= x.shape[0] or jax.default_backend() != "cpu":
      return run(x)
    m = max(m, -(-x.shape[0] // MAX_PASSES))
    pieces = [run(x[i:i + m]) for i in range(0, x.shape[0], m)]
    return {k: jnp.concatenate([p[k] for p in pieces]) for k in pieces[0]}

  def loss(self, params, mparams, idx, step, draws):
    """-(Σ_u objective_u) and aux (per-image unit activations (U, B), diversity (U,))."""
    imgs = self._images(params)
    flat = imgs.reshape((self.U * self.B,) + imgs.shape[2:])
    tail = self._tail(mparams, idx, step)
    return self.pipeline.run(flat, draws, lambda x: tail(x, imgs))

  def loss_and_grad(self, params, mparams, idx, step, draws):
    """`((loss, aux), d loss / d params)`: `jax.value_and_grad(self.loss, has_aux=True)`'s
    numbers, with each random-scale branch holding its own backward pass
    (`Pipeline.value_and_grad`)."""
    imgs, back = jax.vjp(self._images, params)
    flat = imgs.reshape((self.U * self.B,) + imgs.shape[2:])
    out, (g_flat, g_imgs) = self.pipeline.value_and_grad(
        self._tail(mparams, idx, step), flat, draws, imgs)
    return out, back(g_flat.reshape(imgs.shape) + g_imgs)[0]

  def _make_step(self):
    def step(state, i, mparams, idx, tkey):
      """One optimisation step i (0-based) on state (params, opt_state, per-image unit terms, diversity, total objective)."""
      params, opt_state, _, _, _ = state
      draws = self.pipeline.draw(jax.random.fold_in(tkey, i))
      (loss, (per, divs)), g = self.loss_and_grad(params, mparams, idx, i, draws)
      updates, opt_state = self.optimizer.update(g, opt_state, params)
      params = optax.apply_updates(params, updates)
      return params, opt_state, per, divs, -loss
    return step

  def _advance(self, state, start, stop, mparams, idx, tkey):
    return jax.lax.fori_loop(start, stop, lambda i, s: self.step(s, i, mparams, idx, tkey), state)

  def _evaluate(self, mparams, images, idx):
    """Unit activation (spatial mean, standard ReLU) on final images (U, B, H, W, 3)."""
    U, B = self.U, self.B
    flat = images.reshape((U * B,) + images.shape[2:])
    if not self.unit_layers:
      return jnp.full((U, B), jnp.nan)
    acts = self.model.apply(mparams, flat, self.unit_layers)
    rows = []
    for u, (kind, val) in enumerate(self.slots):
      if kind == "unit":
        a = acts[val][u * B:(u + 1) * B]
        rows.append(jnp.mean(jnp.take(a, idx[u], axis=-1), axis=(1, 2)))
      else:
        rows.append(jnp.full((B,), jnp.nan, jnp.float32))
    return jnp.stack(rows)

  def init_state(self, key, units, steps):
    init_key, _ = jax.random.split(key)
    params = jnp.stack([self.param.init(unit_key(init_key, u)) for u in units])
    opt_state = self.optimizer.init(params)
    z = jnp.zeros((self.U, self.B), jnp.float32)
    return (params, opt_state, z, jnp.zeros((self.U,), jnp.float32), jnp.zeros((), jnp.float32))


def get_engine(model, units, cfg, optimizer=None) -> Engine:
  """The compiled engine for these units' layers and config, kept on `model` (`model.program`)."""
  slots = tuple(("unit", u.layer) if isinstance(u, models.Unit) else ("objective", u) for u in units)
  key = ("featvis", slots, _freeze(cfg), optimizer)
  return model.program(key, lambda: Engine(model, slots, cfg, optimizer or make_optimizer(cfg)))


def check_config(cfg) -> None:
  """ValueError for inconsistent settings (sizes too small for the transforms, bad counts)."""
  for f in ("steps", "batch", "size"):
    least = 0 if f == "steps" else 1
    if int(cfg[f]) < least:
      raise ValueError(f"config.{f} must be at least {least}, got {cfg[f]} "
                       f"(--config.{f}=N)")
  if int(cfg.get("micro_batch", 0) or 0) < 0:
    raise ValueError(f"config.micro_batch must be 0 (all rows at once) or positive, got "
                     f"{cfg.micro_batch} (--config.micro_batch=N)")
  if cfg.relu not in ("standard", "lucid", "lucent"):
    raise ValueError(f"config.relu must be standard, lucid or lucent, got {cfg.relu!r}")
  canvas = cfg.size + 2 * cfg.pad
  sizes = make_pipeline(cfg).output_sizes((canvas, canvas))
  small = min(min(s) for s in sizes)
  if small < 16:
    raise ValueError(f"the transforms shrink a {canvas}px canvas to {small}px; use a larger size")


def render(model, units, config=None, *, key=None, progress: bool = True,
           optimizer: optax.GradientTransformation | None = None, seed_images=None,
           generator=None) -> dict:
  """Feature visualisations of `units` (one image batch per unit, all in one program).

  `config.method` picks the prior: "fourier" (this module, the Lucid/Lucent presets), "maco"
  (`featvis.maco`), "accentuation" (`featvis.accentuation`, needs `seed_images`: (S, H, W, 3)
  in [0, 1] or paths; images (U, S, ...), one per unit and seed) or "dgn_am"
  (`featvis.dgn_am`; `generator`: generator params, default read from `config.generator`).
  The other methods return the same keys (plus `transparency` for maco and accentuation).

  Args:
    model: a `cv_jax.models.Network`.
    units: strings ("mixed4a_pre_relu:476", "mixed4a/pool:32"), `models.Unit`s, or custom
      `featvis.objectives.Objective`s (maximised, evaluated on that unit's image batch).
    config: a ConfigDict from `configs/featvis.py` (`get_config("zimmermann2021"|"lucid"|
      "lucent")`); None -> zimmermann2021. Fields used: steps, batch, size, pad, lr, optimizer,
      diversity, relu, mode, transforms, fft, decorrelate, sigmoid, sd, decay_power, seed,
      thresholds.
    key: PRNG key; default `PRNGKey(config.seed)`.
    progress: show a tqdm bar (runs the compiled loop in ~50 chunks).
    optimizer: any optax GradientTransformation, overriding config.optimizer / lr.

  Returns:
    dict with `images` (U, B, size, size, 3) float32 in [0, 1] (canvas padding cropped),
    `objective` (U, B): each image's unit term (spatial-mean channel activation on the last
    step's transformed input, as Lucid's saved objective values), `activation` (U, B): the
    unit's spatial-mean activation of its (pre-ReLU) layer on each final image, `diversity`
    (U,) the diversity term at the last step, `history` (n_chunks, 2) rows (updates done, total objective seen by the last of them),
    `snapshots` {threshold: images}, and `units` (their string names).
  """
  cfg = config if config is not None else _default_config()
  method = cfg.get("method", "fourier")
  if method != "fourier":
    return _render_other(model, units, cfg, method, key, progress, seed_images, generator)
  if seed_images is not None:
    raise ValueError("seed_images are used by the accentuation preset only "
                     f"(config.method is {method!r})")
  check_config(cfg)
  units = parse_units(model, units)
  eng = get_engine(model, units, cfg, optimizer)
  steps = int(cfg.steps)
  if key is None:
    key = jax.random.PRNGKey(int(cfg.seed))
  _, tkey = jax.random.split(key)
  state = eng.init_state(key, units, steps)
  mparams = model.params()
  idx = jnp.asarray([u.channel if isinstance(u, models.Unit) else 0 for u in units], jnp.int32)
  thresholds = sorted({int(t) for t in (cfg.get("thresholds") or ()) if 0 < int(t) <= steps} | {steps})
  bounds = set(thresholds)
  if progress and steps:
    chunk = max(1, math.ceil(steps / 50))
    bounds |= set(range(chunk, steps, chunk))
  bounds = sorted(bounds)
  bar = None
  if progress:
    if not eng.compiled:
      status(f"compiling the feature-visualization program for {len(units)} unit(s) "
             f"(batch {eng.B}, {cfg.size} px; the bar starts moving when it is done) ...")
    bar = progress_bar(desc=f"featvis {len(units)} unit(s)", total=steps, unit="step")
  snapshots = {}
  history = []
  start = 0
  pad = cfg.pad
  for stop in bounds:
    if stop > start:
      state = eng.advance(state, jnp.int32(start), jnp.int32(stop), mparams, idx, tkey)
      eng.compiled = True
      if bar is not None:
        bar.update(stop - start)
      history.append((stop, float(state[4])))
      start = stop
    if stop in thresholds:
      im = eng.images(state[0])
      if pad:
        im = im[:, :, pad:im.shape[2] - pad, pad:im.shape[3] - pad]
      snapshots[stop] = np.asarray(im)
  if bar is not None:
    bar.close()
  images = snapshots[steps] if steps else None
  if images is None:
    im = eng.images(state[0])
    images = np.asarray(im[:, :, pad:im.shape[2] - pad, pad:im.shape[3] - pad] if pad else im)
    snapshots[0] = images
  activation = np.asarray(eng.evaluate(mparams, jnp.asarray(images), idx))
  return dict(images=images, objective=np.asarray(state[2]), activation=activation,
              diversity=np.asarray(state[3]), history=np.asarray(history, np.float32).reshape(-1, 2),
              snapshots=snapshots, units=[str(u) if isinstance(u, models.Unit) else u.name
                                          for u in units])


def _render_other(model, units, cfg, method, key, progress, seed_images, generator) -> dict:
  """Dispatch to the MACO, accentuation or DGN-AM renderer."""
  units = parse_units(model, units)
  if method == "maco":
    from cv_jax.featvis import maco
    return maco.render(model, units, cfg, key=key, progress=progress)
  if method == "accentuation":
    from cv_jax.featvis import accentuation
    return accentuation.render(model, units, cfg, seed_images, key=key, progress=progress)
  if method == "dgn_am":
    from cv_jax.featvis import dgn_am
    return dgn_am.render(model, units, cfg, generator=generator, key=key, progress=progress)
  raise ValueError(f"unknown featvis method {method!r}; choose fourier, maco, accentuation or "
                   "dgn_am")
