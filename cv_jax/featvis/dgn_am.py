"""DGN-AM (Nguyen et al. 2016): activation maximisation in the code space of the DeePSiM fc6
generator, on any cv_jax classifier and unit, many units in one compiled optax loop.

One step (`act_max.py`, successors_spec §3.4), for every code z at once:
1. x = G(z) (256 × 256, BGR mean-subtracted); its centre crop (offset (256 − size) // 2) goes to
   the classifier as cv_jax image `deepsim.to_rgb01(crop)`, which for BVLC GoogLeNet is exactly
   the Caffe blob the original feeds (no clipping);
2. g = ∂a/∂z, a = the unit's spatial-mean channel activation (cv_jax's unit objective; the
   original takes one spatial position of a conv channel);
3. z ← z + lr_i · g / mean|g| with lr_i = lr + (lr_end − lr) · i / steps (the original's two
   normalised steps, image then code, reduce to this: the first normalisation cancels);
   a zero or non-finite gradient leaves z unchanged;
4. clip: "bounds" → [0, code_bounds] per code unit (no upper bound without a file), "unit" →
   [−1, 1], "none";
5. L2 decay z ← l2_decay · z when 0 < l2_decay < 1.

Steps 3 is an optax chain (`scale_by_mean_abs`, a linear schedule); 4–5 are the projection after
`optax.apply_updates`. The returned image is the crop of the last code (as the original), in
[0, 1] (clipped for display); `activation` is measured on that displayed image.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cv_jax.featvis import driver
from cv_jax.models import deepsim


class _Empty(NamedTuple):
  pass


def scale_by_mean_abs() -> optax.GradientTransformation:
  """u = g / mean|g| per code (last axis); 0 where that mean is 0 or not finite."""
  def init(params):
    del params
    return _Empty()

  def update(updates, state, params=None):
    del params
    m = jnp.mean(jnp.abs(updates), axis=-1, keepdims=True)
    ok = jnp.isfinite(m) & (m > 0) & jnp.all(jnp.isfinite(updates), axis=-1, keepdims=True)
    return jnp.where(ok, updates / jnp.where(ok, m, 1.0), 0.0), state

  return optax.GradientTransformation(init, update)


def step_sizes(lr: float, lr_end: float, steps: int):
  """The original's linear schedule lr_i = lr + (lr_end − lr) · i / steps (an optax schedule)."""
  return lambda i: lr + (lr_end - lr) * i / max(steps, 1)


def make_optimizer(cfg) -> optax.GradientTransformation:
  """Descent on −a: normalise by mean |g|, then scale by −lr_i (optax subtracts nothing itself)."""
  sched = step_sizes(float(cfg.lr), float(cfg.lr_end), int(cfg.steps))
  return optax.chain(scale_by_mean_abs(), optax.scale_by_schedule(lambda i: -sched(i)))


def read_bounds(path: str, n: int) -> np.ndarray:
  """Upper code bounds from a text file of `n` numbers (DGN-AM's act_range/*/fc6.txt)."""
  try:
    ub = np.loadtxt(path, dtype=np.float32).reshape(-1)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read code bounds {path!r} ({e}); give a text file of {n} numbers "
                     "such as act_range/3x/fc6.txt of Evolving-AI-Lab/synthesizing") from None
  if ub.size != n:
    raise ValueError(f"code bounds {path!r} hold {ub.size} numbers, the generator code has {n}")
  return ub


def project(z: jax.Array, cfg, upper: jax.Array) -> jax.Array:
  """Clip (config.clip) then L2 decay (config.l2_decay) of codes (..., n)."""
  if cfg.clip == "bounds":
    z = jnp.clip(z, 0.0, upper)
  elif cfg.clip == "unit":
    z = jnp.clip(z, -1.0, 1.0)
  elif cfg.clip != "none":
    raise ValueError(f"config.clip must be bounds, unit or none, got {cfg.clip!r}")
  d = float(cfg.l2_decay)
  return z * d if 0 < d < 1 else z


def start_codes(cfg, n_units: int, batch: int, n: int) -> np.ndarray:
  """(U, B, n) start codes: NumPy's N(0, 1) seeded with config.seed (row 0 = act_max.py's
  `np.random.seed(seed); np.random.normal(0, 1, (1, n))`), the same for every unit."""
  z = np.random.RandomState(int(cfg.seed)).normal(0, 1, (batch, n)).astype(np.float32)
  return np.broadcast_to(z, (n_units, batch, n)).copy()


@dataclasses.dataclass
class Engine:
  """The compiled DGN-AM program for one (model, generator spec, units, config)."""
  model: Any
  spec: tuple
  units: tuple
  cfg: Any

  def __post_init__(self):
    driver.setup_engine(self, int(self.cfg.batch), make_optimizer(self.cfg))
    self.off = deepsim.crop_offset(deepsim.output_size(self.spec), int(self.cfg.size))

  def _crop(self, gparams, z):
    s, o = int(self.cfg.size), self.off
    x = deepsim.apply(self.spec, gparams, z.reshape(-1, z.shape[-1]))
    return deepsim.to_rgb01(x[:, o:o + s, o:o + s])

  def _images(self, gparams, z):
    im = jnp.clip(self._crop(gparams, z), 0.0, 1.0)
    return im.reshape((self.U, self.B) + im.shape[1:])

  def objective(self, z, gparams, mparams, idx):
    acts = self.model.apply(mparams, self._crop(gparams, z), self.layers, relu=self.cfg.relu)
    per = driver.channel_means(acts, self.units, idx, self.B)
    return jnp.sum(per), per

  def step(self, state, i, gparams, mparams, idx, upper):
    z, opt_state, _ = state
    g, per = jax.grad(self.objective, has_aux=True)(z, gparams, mparams, idx)
    updates, opt_state = self.optimizer.update(-g, opt_state, z)  # descent on −a
    return project(optax.apply_updates(z, updates), self.cfg, upper), opt_state, per

  def _advance(self, state, start, stop, gparams, mparams, idx, upper):
    return jax.lax.fori_loop(
        start, stop, lambda i, s: self.step(s, i, gparams, mparams, idx, upper), state)

  def _evaluate(self, mparams, images, idx):
    flat = images.reshape((self.U * self.B,) + images.shape[2:])
    acts = self.model.apply(mparams, flat, self.layers)
    return driver.channel_means(acts, self.units, idx, self.B)


def check_config(cfg) -> None:
  """ValueError for settings DGN-AM cannot run with."""
  if int(cfg.batch) < 1 or int(cfg.steps) < 0 or int(cfg.size) < 1:
    raise ValueError(f"config.batch, steps, size must be positive (got {cfg.batch}, {cfg.steps}, "
                     f"{cfg.size})")
  if cfg.clip not in ("bounds", "unit", "none"):
    raise ValueError(f"config.clip must be bounds, unit or none, got {cfg.clip!r}")


def render(model, units, cfg, *, generator=None, key=None, progress: bool = True) -> dict:
  """DGN-AM images (U, B, size, size, 3) of `units`; see `featvis.render` for the dict.

  `generator`: a `deepsim.Generator` (default: read `config.generator`). `key` is unused (the
  start code comes from NumPy seeded with config.seed, as the original); extra keys: `codes`
  (U, B, n) final codes.
  """
  del key
  check_config(cfg)
  driver.check_units(units, "DGN-AM")
  if generator is None:
    from cv_jax.weights.generator import load_generator
    generator = load_generator(cfg.get("generator") or None)
  spec = generator.spec
  n = deepsim.code_size(spec)
  # steps is part of the key: the step-size schedule is built from it
  ekey = ("featvis.dgn_am", spec, tuple(u.layer for u in units), int(cfg.steps),
          driver.freeze_config(cfg))
  eng = model.program(ekey, lambda: Engine(model, spec, tuple(units), cfg))
  upper = (jnp.asarray(read_bounds(cfg.code_bounds, n)) if cfg.get("code_bounds")
           else jnp.full((n,), jnp.inf, jnp.float32))
  z = jnp.asarray(start_codes(cfg, eng.U, eng.B, n))
  state = (z, eng.optimizer.init(z), jnp.zeros((eng.U, eng.B), jnp.float32))
  gparams, mparams, idx = generator.params(), model.params(), driver.channel_index(units)
  steps = int(cfg.steps)

  def advance(s, a, b):
    return eng.advance(s, a, b, gparams, mparams, idx, upper)

  state, snaps, history = driver.run_chunks(
      advance, state, steps, driver.thresholds_of(cfg, steps), progress,
      f"dgn_am {len(units)} unit(s)", lambda s: np.asarray(eng.images(gparams, s[0])),
      lambda s: jnp.sum(s[2]))
  return driver.render_result(eng, snaps, history, state[2], mparams, idx, units,
                              codes=np.asarray(state[0]))
