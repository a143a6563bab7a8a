"""MACO (Fel et al. 2023): optimise only the Fourier phase under a fixed natural-image magnitude,
many units in one compiled program.

Image (successors_spec §1.2, Xplique `maco_image_parametrization`): the phase is standardised
(mean 0, std 1, ε 1e-5) per image; spectrum = magnitude · e^{i·phase}; `irfft2` (unnormalised
inverse, as TF's `irfft2d`); the spatial image is standardised per image (ε 1e-5); colours are
re-correlated with Lucid's matrix (`param.decorrelate_color`); sigmoid → [0, 1].

Each step (Xplique `maco_optimisation_step`): `crops` random crops per image (`crops.maco_boxes`:
centres N(0.5, 0.15), side N(b_i, 0.05) in [0.05, 1], b_i linear from `box_size[0]` to
`box_size[1]` over the steps), `crop_and_resize` to the model input, noise N(0, s²) + U(±s/2),
objective = mean over crops of the unit's spatial-mean channel activation. The transparency map
accumulates |∂objective/∂image| over all steps. Nadam at lr 1.0 on the phase.

Units in one program: every unit's images are rows of one model batch; each unit draws its own
crops and noise from `fold_in(unit key, step)`, so its result does not depend on which other
units share the program. Crops can be pushed through the model in chunks (`crop_chunk`, a
`lax.scan` that accumulates the image gradient), which bounds memory on small machines.

Units of Xplique's `values_range` (-1, 1) are converted to cv_jax's [0, 1] images: Xplique's noise
0.08 becomes 0.04 here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cv_jax.featvis import crops as crop_lib
from cv_jax.featvis import driver
from cv_jax.featvis import param as param_lib
from cv_jax.featvis import spectrum as spectrum_lib

EPS = 1e-5


def standardize(x: jax.Array) -> jax.Array:
  """(x − mean) / (std + 1e-5) over the whole array (one image)."""
  return (x - jnp.mean(x)) / (jnp.std(x) + EPS)


def maco_image(phase: jax.Array, magnitude: jax.Array) -> jax.Array:
  """One image (H, W, 3) in [0, 1] from its phase (3, H, W//2 + 1) and the magnitude (same shape).

  H and W are taken from the phase (even W).
  """
  h = phase.shape[1]
  w = 2 * (phase.shape[2] - 1)
  p = standardize(phase)
  spec = magnitude * (jnp.cos(p) + 1j * jnp.sin(p))
  img = jnp.fft.irfftn(spec, s=(h, w), axes=(-2, -1), norm="backward")
  img = standardize(jnp.transpose(img, (1, 2, 0)))
  return jax.nn.sigmoid(param_lib.decorrelate_color(img)).astype(jnp.float32)


def phase_init(key: jax.Array, batch: int, h: int, w: int) -> jax.Array:
  """Initial phases (batch, 3, h, w//2 + 1) ~ N(0, 1) (Xplique)."""
  return jax.random.normal(key, (batch, 3, h, w // 2 + 1), jnp.float32)


def box_size_at(cfg, i: jax.Array, steps: jax.Array) -> jax.Array:
  """The step's average crop side: linear from box_size[0] (step 0) to box_size[1] (last step)."""
  b0, b1 = (float(v) for v in cfg.box_size)
  return b0 + (b1 - b0) * i.astype(jnp.float32) / jnp.maximum(steps - 1, 1).astype(jnp.float32)


def make_optimizer(cfg) -> optax.GradientTransformation:
  """nadam (optax's Nesterov Adam), adam or any optax optimiser named in config, at cfg.lr."""
  if cfg.optimizer == "nadam":
    return optax.nadam(cfg.lr, b1=0.9, b2=0.999, eps=1e-7)
  return driver.make_optimizer(cfg)


def check_config(cfg) -> None:
  """ValueError for settings MACO cannot run with."""
  for f in ("size", "model_size", "batch", "crops", "crop_chunk"):
    if int(cfg[f]) < 1:
      raise ValueError(f"config.{f} must be positive, got {cfg[f]}")
  if int(cfg.steps) < 0:
    raise ValueError(f"config.steps must be >= 0, got {cfg.steps}")
  if cfg.size % 2:
    raise ValueError(f"config.size must be even for MACO, got {cfg.size}")
  if cfg.crops % cfg.crop_chunk:
    raise ValueError(f"config.crops ({cfg.crops}) must be a multiple of config.crop_chunk "
                     f"({cfg.crop_chunk})")


@dataclasses.dataclass
class Engine:
  """The compiled MACO program for one (model, unit layers, config shape)."""
  model: Any
  units: tuple
  cfg: Any

  def __post_init__(self):
    driver.setup_engine(self, int(self.cfg.batch), make_optimizer(self.cfg))

  def _images(self, phase, mag):
    return jax.vmap(jax.vmap(maco_image, (0, None)), (0, None))(phase, mag)

  def chunk_objective(self, images, mparams, idx, keys, box, c):
    """Σ of the per-image objectives on crop chunk c, and those objectives (U, B)."""
    cfg, U, B = self.cfg, self.U, self.B
    k, m = int(cfg.crop_chunk), int(cfg.model_size)
    flat = images.reshape((U * B,) + images.shape[2:])
    ckeys = jax.vmap(lambda kk: jax.random.fold_in(kk, c))(keys)

    def one(img, kk):
      kb, kn = jax.random.split(kk)
      boxes = crop_lib.maco_boxes(kb, k, box, cfg.centre_std, cfg.box_std, cfg.min_box)
      x = crop_lib.crop_and_resize(img, boxes, (m, m))
      return crop_lib.add_noise(kn, x, cfg.noise)

    x = jax.vmap(one)(flat, ckeys).reshape((U * B * k, m, m, 3))
    acts = self.model.apply(mparams, x, self.layers, relu=cfg.relu)
    obj = driver.channel_means(acts, self.units, idx, B * k).reshape(U, B, k).mean(-1)
    return jnp.sum(obj), obj

  def step(self, state, i, mparams, idx, ukeys, mag, steps):
    """One MACO update of every unit's phases; state = (phase, opt, transparency, objective)."""
    phase, opt_state, transp, _ = state
    cfg, B = self.cfg, self.B
    images, vjp = jax.vjp(lambda p: self._images(p, mag), phase)
    box = box_size_at(cfg, i, steps)
    keys = jax.vmap(lambda kk: jax.vmap(lambda b: jax.random.fold_in(jax.random.fold_in(kk, i), b))(
        jnp.arange(B)))(ukeys).reshape(-1, 2)
    n_chunks = int(cfg.crops) // int(cfg.crop_chunk)
    grad_fn = jax.grad(self.chunk_objective, has_aux=True)

    def body(carry, c):
      g, o = carry
      gc, oc = grad_fn(images, mparams, idx, keys, box, c)
      return (g + gc, o + oc), None

    zeros = (jnp.zeros_like(images), jnp.zeros((self.U, B), jnp.float32))
    (g_img, obj), _ = jax.lax.scan(body, zeros, jnp.arange(n_chunks))
    g_img, obj = g_img / n_chunks, obj / n_chunks
    (g_phase,) = vjp(-g_img)  # gradient of the loss −objective
    updates, opt_state = self.optimizer.update(g_phase, opt_state, phase)
    return optax.apply_updates(phase, updates), opt_state, transp + jnp.abs(g_img), obj

  def _advance(self, state, start, stop, mparams, idx, ukeys, mag, steps):
    return jax.lax.fori_loop(
        start, stop, lambda i, s: self.step(s, i, mparams, idx, ukeys, mag, steps), state)

  def _evaluate(self, mparams, images, idx):
    flat = images.reshape((self.U * self.B,) + images.shape[2:])
    x = driver.resize_for_model(flat, int(self.cfg.model_size))
    acts = self.model.apply(mparams, x, self.layers)
    return driver.channel_means(acts, self.units, idx, self.B)


def get_engine(model, units, cfg) -> Engine:
  """The engine for these units' layers and config, kept on `model` (`model.program`); channels
  are runtime arguments, so other channels of the same layers reuse it."""
  key = ("featvis.maco", tuple(u.layer for u in units), driver.freeze_config(cfg))
  return model.program(key, lambda: Engine(model, tuple(units), cfg))


def magnitude_for(cfg) -> np.ndarray:
  """The config's magnitude spectrum (file or the shipped default) resized to the canvas."""
  m = spectrum_lib.load_spectrum(cfg.get("spectrum") or None)
  if m.shape[0] != 3:
    raise ValueError(f"MACO needs a 3-channel spectrum, got {m.shape[0]} channels")
  return spectrum_lib.resize_spectrum(m, int(cfg.size), int(cfg.size))


def render(model, units, cfg, *, key=None, progress: bool = True) -> dict:
  """MACO images of `units` (models.Unit list); see `featvis.render` for the returned dict.

  Extra key: `transparency` (U, B, size, size, 3), the accumulated |∂objective/∂image|.
  """
  check_config(cfg)
  driver.check_units(units, "MACO")
  eng = get_engine(model, units, cfg)
  steps = int(cfg.steps)
  key = jax.random.PRNGKey(int(cfg.seed)) if key is None else key
  init_key, step_key = jax.random.split(key)
  phase = jnp.stack([phase_init(k, eng.B, cfg.size, cfg.size)
                     for k in driver.unit_keys(init_key, units)])
  state = (phase, eng.optimizer.init(phase),
           jnp.zeros((eng.U, eng.B, cfg.size, cfg.size, 3), jnp.float32),
           jnp.zeros((eng.U, eng.B), jnp.float32))
  mparams = model.params()
  idx = driver.channel_index(units)
  ukeys = driver.unit_keys(step_key, units)
  mag = jnp.asarray(magnitude_for(cfg))
  n = jnp.int32(steps)

  def advance(s, a, b):
    return eng.advance(s, a, b, mparams, idx, ukeys, mag, n)

  state, snaps, history = driver.run_chunks(
      advance, state, steps, driver.thresholds_of(cfg, steps), progress,
      f"maco {len(units)} unit(s)", lambda s: np.asarray(eng.images(s[0], mag)),
      lambda s: jnp.sum(s[3]))
  return driver.render_result(eng, snaps, history, state[3], mparams, idx, units,
                              transparency=np.asarray(state[2]))
