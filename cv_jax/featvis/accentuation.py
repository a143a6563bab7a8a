"""Feature accentuation (Hamblin et al. 2024): from seed images, raise a unit while the image's
activations at a regularisation layer stay close to the seed's; seeds × units in one program.

Parameterisation: the Lucid FFT image (`param.fft_to_image` + decorrelated colour + sigmoid)
initialised from each seed: t = logit(clip(seed, ε, 1 − ε)), decorrelated (the inverse of
`param.decorrelate_color`), times 4 (Lucid's constant), orthonormal rfft2, divided by the 1/f
scale. The parameterised image at step 0 is therefore the (clipped) seed itself.

Each step (faccent `render_vis` with `standard_box_transforms`; successors_spec §2):
* `crops` parallel augmentations per image: square boxes, side U[box_size], top-left uniform
  inside the canvas (`crops.accent_boxes`), bilinear `crop_and_resize` to the model input,
  noise N(0, s²) + U(±s/2). The seed goes through the same boxes with its own noise.
* objective o = mean over crops of the unit's spatial-mean channel activation;
  regulariser r = mean over crops and positions of ‖a(image) − a(seed)‖₂ over the channels of
  `reg_layer` (faccent `l2_compare`); maximised: o − reg_alpha · β · r, where β = Σ|∂o/∂params|
  / Σ|∂r/∂params| measured once at step 0 (faccent's balance), per image.
* the transparency map accumulates |∂o/∂image| (the objective alone, as faccent; a second
  backward pass; `transparency=False` skips it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cv_jax.featvis import crops as crop_lib
from cv_jax.featvis import driver
from cv_jax.featvis import param as param_lib

NORM_EPS = 1e-12


def seed_to_spectrum(seed: np.ndarray, decay_power: float = 1.0, eps: float = 1e-3) -> np.ndarray:
  """FFT parameters (3, H, W//2 + 1, 2) whose Lucid FFT image is `seed` (H, W, 3) in [0, 1]."""
  seed = np.clip(np.asarray(seed, np.float64), eps, 1 - eps)
  h, w = seed.shape[:2]
  t = np.log(seed / (1 - seed))  # logit: sigmoid(t) = seed
  t = t @ np.linalg.inv(param_lib.COLOR_CORRELATION_NORMALIZED.T.astype(np.float64))
  spec = np.fft.rfft2(np.moveaxis(t, -1, 0) * 4.0, norm="ortho")
  spec = spec / param_lib.fft_scale(h, w, decay_power)
  return np.stack([spec.real, spec.imag], -1).astype(np.float32)


def spectrum_to_image(params: jax.Array, h: int, w: int, decay_power: float = 1.0) -> jax.Array:
  """Images (B, h, w, 3) in [0, 1] from FFT parameters (B, 3, h, wf, 2) (Lucid FFT image)."""
  t = param_lib.fft_to_image(params, h, w, decay_power, "lucent")
  return param_lib.to_valid_rgb(t, True, True)


def load_seeds(seed_images, size: int) -> np.ndarray:
  """(S, size, size, 3) float32 in [0, 1] from arrays (any size: resized) or image paths."""
  from PIL import Image
  if isinstance(seed_images, (str, os.PathLike)):
    seed_images = [seed_images]
  if isinstance(seed_images, np.ndarray) and seed_images.ndim == 3:
    seed_images = seed_images[None]
  out = []
  for s in seed_images:
    if isinstance(s, (str, os.PathLike)):
      from cv_jax.data import load_image
      s = load_image(s, size, size)
    s = np.asarray(s, np.float32)
    if s.ndim != 3 or s.shape[-1] != 3:
      raise ValueError(f"seed images must be (H, W, 3) RGB arrays in [0, 1], got shape {s.shape}")
    if s.shape[:2] != (size, size):
      im = Image.fromarray((np.clip(s, 0, 1) * 255).round().astype(np.uint8))
      s = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    out.append(s)
  if not out:
    raise ValueError("accentuation needs at least one seed image")
  return np.stack(out)


def check_config(cfg) -> None:
  """ValueError for settings accentuation cannot run with."""
  for f in ("size", "model_size", "crops"):
    if int(cfg[f]) < 1:
      raise ValueError(f"config.{f} must be positive, got {cfg[f]}")
  if int(cfg.steps) < 0:
    raise ValueError(f"config.steps must be >= 0, got {cfg.steps}")
  if cfg.size % 2:
    raise ValueError(f"config.size must be even for accentuation, got {cfg.size}")


@dataclasses.dataclass
class Engine:
  """The compiled accentuation program for one (model, units, seed count, config)."""
  model: Any
  units: tuple
  n_seeds: int
  cfg: Any

  def __post_init__(self):
    cfg = self.cfg
    self.reg_layers = tuple(cfg.reg_layer or u.layer for u in self.units)
    layers = tuple(sorted(set(driver.unit_layers(self.units)) | set(self.reg_layers)))
    driver.setup_engine(self, self.n_seeds, driver.make_optimizer(cfg), layers)
    self.balance = jax.jit(self._balance)

  def _images(self, params):
    s = int(self.cfg.size)
    return jax.vmap(lambda p: spectrum_to_image(p, s, s, self.cfg.decay_power))(params)

  def terms(self, images, seeds, mparams, idx, keys):
    """Per-image objective and regulariser (U, B) for the step's keys (U·B, 2)."""
    cfg, U, B = self.cfg, self.U, self.B
    k, m = int(cfg.crops), int(cfg.model_size)
    flat = images.reshape((U * B,) + images.shape[2:])
    seed_rows = jnp.tile(seeds, (U, 1, 1, 1))
    lo, hi = (float(v) for v in cfg.box_size)

    def one(img, seed, kk):
      kb, kn, ks = jax.random.split(kk, 3)
      boxes = crop_lib.accent_boxes(kb, k, lo, hi)
      x = crop_lib.add_noise(kn, crop_lib.crop_and_resize(img, boxes, (m, m)), cfg.noise)
      y = crop_lib.add_noise(ks, crop_lib.crop_and_resize(seed, boxes, (m, m)), cfg.noise)
      return x, y

    x, y = jax.vmap(one)(flat, seed_rows, keys)
    x = x.reshape((U * B * k, m, m, 3))
    y = y.reshape((U * B * k, m, m, 3))
    acts = self.model.apply(mparams, x, self.layers, relu=cfg.relu)
    ref = self.model.apply(mparams, y, tuple(sorted(set(self.reg_layers))))
    obj = driver.channel_means(acts, self.units, idx, B * k).reshape(U, B, k).mean(-1)
    regs = []
    for u, layer in enumerate(self.reg_layers):
      sl = slice(u * B * k, (u + 1) * B * k)
      d = acts[layer][sl] - jax.lax.stop_gradient(ref[layer][sl])
      dist = jnp.sqrt(jnp.sum(d * d, axis=-1) + NORM_EPS)  # (B·k, h, w)
      regs.append(dist.reshape(B, -1).mean(-1))
    return obj, jnp.stack(regs)

  def _grads(self, params, seeds, mparams, idx, keys):
    """Objective, regulariser and their image gradients (two backward passes, one forward)."""
    images, vjp_p = jax.vjp(self._images, params)
    (obj, reg), vjp_i = jax.vjp(lambda im: self.terms(im, seeds, mparams, idx, keys), images)
    one, zero = jnp.ones_like(obj), jnp.zeros_like(reg)
    (g_obj,) = vjp_i((one, zero))
    (g_reg,) = vjp_i((jnp.zeros_like(obj), jnp.ones_like(reg)))
    return obj, reg, g_obj, g_reg, vjp_p

  def step_keys(self, ukeys, i):
    return jax.vmap(lambda kk: jax.vmap(lambda b: jax.random.fold_in(jax.random.fold_in(kk, i), b))(
        jnp.arange(self.B)))(ukeys).reshape(-1, 2)

  def _balance(self, params, seeds, mparams, idx, ukeys):
    """β (U, B): Σ|∂o/∂params| / Σ|∂r/∂params| per image at step 0."""
    _, _, g_obj, g_reg, vjp_p = self._grads(params, seeds, mparams, idx, self.step_keys(ukeys, 0))
    (po,) = vjp_p(g_obj)
    (pr,) = vjp_p(g_reg)
    so = jnp.sum(jnp.abs(po), axis=tuple(range(2, po.ndim)))
    sr = jnp.sum(jnp.abs(pr), axis=tuple(range(2, pr.ndim)))
    return so / jnp.maximum(sr, 1e-30)

  def step(self, state, i, seeds, mparams, idx, ukeys, beta):
    params, opt_state, transp, _, _ = state
    w = float(self.cfg.reg_alpha) * beta
    keys = self.step_keys(ukeys, i)
    if self.cfg.transparency:
      obj, reg, g_obj, g_reg, vjp_p = self._grads(params, seeds, mparams, idx, keys)
      g_img = g_obj - w[:, :, None, None, None] * g_reg  # gradient of the maximised total
      transp = transp + jnp.abs(g_obj)
    else:  # one backward pass of the total
      images, vjp_p = jax.vjp(self._images, params)
      (obj, reg), vjp_i = jax.vjp(lambda im: self.terms(im, seeds, mparams, idx, keys), images)
      (g_img,) = vjp_i((jnp.ones_like(obj), -w))
    (g,) = vjp_p(-g_img)
    updates, opt_state = self.optimizer.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, transp, obj, reg

  def _advance(self, state, start, stop, seeds, mparams, idx, ukeys, beta):
    return jax.lax.fori_loop(
        start, stop, lambda i, s: self.step(s, i, seeds, mparams, idx, ukeys, beta), state)

  def _evaluate(self, mparams, images, idx):
    flat = images.reshape((self.U * self.B,) + images.shape[2:])
    x = driver.resize_for_model(flat, int(self.cfg.model_size))
    acts = self.model.apply(mparams, x, driver.unit_layers(self.units))
    return driver.channel_means(acts, self.units, idx, self.B)


def render(model, units, cfg, seed_images, *, key=None, progress: bool = True) -> dict:
  """Accentuations of every seed for every unit: images (U, S, size, size, 3).

  Extra keys: `transparency` (U, S, size, size, 3), `regularizer` (U, S) at the last step,
  `balance` (U, S) β, `seed_activation` (U, S) the unit's activation on each seed, and `seeds`.
  """
  if seed_images is None:
    raise ValueError("the accentuation preset needs seed images: render(..., seed_images=...) "
                     "or --seed_images=a.jpg,b.jpg")
  check_config(cfg)
  driver.check_units(units, "accentuation")
  size = int(cfg.size)
  seeds = load_seeds(seed_images, size)
  ekey = ("featvis.accentuation", tuple(u.layer for u in units), len(seeds),
          driver.freeze_config(cfg))
  eng = model.program(ekey, lambda: Engine(model, tuple(units), len(seeds), cfg))
  key = jax.random.PRNGKey(int(cfg.seed)) if key is None else key
  steps = int(cfg.steps)
  spec = np.stack([seed_to_spectrum(s, cfg.decay_power, cfg.logit_eps) for s in seeds])
  params = jnp.asarray(np.broadcast_to(spec, (eng.U,) + spec.shape).copy())
  mparams = model.params()
  idx = driver.channel_index(units)
  ukeys = driver.unit_keys(key, units)
  seeds_j = jnp.asarray(seeds)
  beta = eng.balance(params, seeds_j, mparams, idx, ukeys)
  zeros = jnp.zeros((eng.U, eng.B), jnp.float32)
  state = (params, eng.optimizer.init(params), jnp.zeros((eng.U, eng.B, size, size, 3)), zeros,
           zeros)

  def advance(s, a, b):
    return eng.advance(s, a, b, seeds_j, mparams, idx, ukeys, beta)

  state, snaps, history = driver.run_chunks(
      advance, state, steps, driver.thresholds_of(cfg, steps), progress,
      f"accentuation {len(units)} unit(s) x {len(seeds)} seed(s)",
      lambda s: np.asarray(eng.images(s[0])), lambda s: jnp.sum(s[3]))
  seed_act = eng.evaluate(mparams, jnp.broadcast_to(seeds_j, (eng.U,) + seeds_j.shape), idx)
  return driver.render_result(eng, snaps, history, state[3], mparams, idx, units,
                              transparency=np.asarray(state[2]), regularizer=np.asarray(state[4]),
                              balance=np.asarray(beta), seed_activation=np.asarray(seed_act),
                              seeds=seeds)
