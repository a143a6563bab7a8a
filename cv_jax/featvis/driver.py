"""Shared pieces of the MACO, feature-accentuation and DGN-AM renderers.

* `run_chunks`: the host side of a compiled loop. `advance(state, start, stop)` is one jitted
  `lax.fori_loop` with dynamic bounds (compiled once); the host calls it per chunk of steps
  (chunk boundaries at the snapshot thresholds and, with progress, ~50 chunks for a tqdm bar).
* `unit_layers`, `channel_means`: the unit objective (spatial-mean channel activation, as in
  the Lucid renderer) for many units whose image rows are stacked in one batch.
* `unit_key(s)`: per-unit PRNG keys from the unit names, so that a unit gets the same images
  whether it is rendered alone or with others.
* `make_optimizer`, `freeze_config`: the config's optax optimiser, and the hashable part of a
  config that decides the compiled program (used as `Network.program` keys).
* `setup_engine`, `render_result`: an engine's shared fields and jitted programs, and the dict every renderer returns (images, objective, activation, ...).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cv_jax import models
from cv_jax.featvis import objectives as obj_lib


def make_optimizer(cfg) -> optax.GradientTransformation:
  """optax optimiser from config (`optimizer` name, `lr`); Adam uses TF/torch defaults."""
  name = cfg.get("optimizer", "adam")
  if name == "adam":
    return optax.adam(cfg.lr, b1=0.9, b2=0.999, eps=1e-8)
  if name == "sgd":
    return optax.sgd(cfg.lr)
  if hasattr(optax, name):
    return getattr(optax, name)(cfg.lr)
  raise ValueError(f"unknown optimizer {name!r}")


def unit_key(init_key: jax.Array, unit) -> jax.Array:
  """The initialisation key of one unit (stable across processes: crc32 of its name)."""
  name = str(unit) if not isinstance(unit, obj_lib.Objective) else unit.name
  return jax.random.fold_in(init_key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def freeze_config(cfg) -> tuple:
  """The config as a hashable tuple, without the fields that do not change the program."""
  d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  for k in ("units", "seed", "steps", "thresholds", "out"):
    d.pop(k, None)

  def fr(v):
    if isinstance(v, dict):
      return tuple(sorted((k, fr(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
      return tuple(fr(x) for x in v)
    return v
  return fr(d)


def check_units(units: Sequence, method: str) -> None:
  """ValueError unless every unit is a `models.Unit` (custom Objectives: Lucid renderer only)."""
  for u in units:
    if not isinstance(u, models.Unit):
      raise ValueError(f"the {method} renderer takes units ('layer:channel'), not {u!r}; custom "
                       "objectives work with the Lucid presets")


def unit_keys(key: jax.Array, units: Sequence) -> jax.Array:
  """(U, 2) keys, one per unit, from `key` and each unit's name (`unit_key`)."""
  return jnp.stack([unit_key(key, u) for u in units])


def unit_layers(units: Sequence) -> tuple[str, ...]:
  """The distinct layers of `units`, sorted."""
  return tuple(sorted({u.layer for u in units}))


def channel_means(acts: dict, units: Sequence, idx: jax.Array, per_unit: int) -> jax.Array:
  """(U, per_unit) spatial means of unit u's channel over its rows u*per_unit ... of the batch."""
  rows = []
  for u, unit in enumerate(units):
    a = acts[unit.layer][u * per_unit:(u + 1) * per_unit]
    rows.append(jnp.mean(jnp.take(a, idx[u], axis=-1), axis=(1, 2)))
  return jnp.stack(rows)


def channel_index(units: Sequence) -> jax.Array:
  """(U,) int32 channel of each unit."""
  return jnp.asarray([u.channel for u in units], jnp.int32)


def resize_for_model(images: jax.Array, size: int) -> jax.Array:
  """NHWC images resized (antialiased linear) to size × size; unchanged when already that size."""
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, images.shape[:1] + (size, size, images.shape[-1]), "linear")


def thresholds_of(cfg, steps: int) -> list[int]:
  """Snapshot steps: config.thresholds within (0, steps], plus the last step."""
  return sorted({int(t) for t in (cfg.get("thresholds") or ()) if 0 < int(t) <= steps} | {steps})


def run_chunks(advance: Callable, state, steps: int, thresholds: Sequence[int], progress: bool,
               desc: str, snapshot: Callable, history_value: Callable | None = None):
  """Run `advance(state, start, stop)` in chunks; returns (state, {threshold: snapshot(state)},
  history rows (updates done, history_value(state)))."""
  bounds = set(thresholds)
  if progress and steps:
    chunk = max(1, math.ceil(steps / 50))
    bounds |= set(range(chunk, steps, chunk))
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=steps, desc=desc, unit="step")
  snaps, history, start = {}, [], 0
  for stop in sorted(bounds):
    if stop > start:
      state = advance(state, jnp.int32(start), jnp.int32(stop))
      if bar is not None:
        bar.update(stop - start)
      if history_value is not None:
        history.append((stop, float(history_value(state))))
      start = stop
    if stop in thresholds:
      snaps[stop] = snapshot(state)
  if bar is not None:
    bar.close()
  if not snaps:
    snaps[0] = snapshot(state)
  return state, snaps, np.asarray(history, np.float32).reshape(-1, 2)


def setup_engine(eng, per_unit: int, optimizer: optax.GradientTransformation,
                 layers: tuple[str, ...] | None = None) -> None:
  """Set an engine's shared fields: `U` (units), `B` (images per unit), `layers` (default: the
  units' layers), `optimizer`, and jitted `advance`, `images`, `evaluate` of its `_advance`,
  `_images`, `_evaluate` methods (each compiled on first call)."""
  eng.U, eng.B = len(eng.units), int(per_unit)
  eng.layers = unit_layers(eng.units) if layers is None else layers
  eng.optimizer = optimizer
  eng.advance = jax.jit(eng._advance)
  eng.images = jax.jit(eng._images)
  eng.evaluate = jax.jit(eng._evaluate)


def render_result(eng, snaps: dict, history: np.ndarray, objective, mparams, idx: jax.Array,
                  units: Sequence, **extra) -> dict:
  """The renderer's output dict from `run_chunks`' snapshots and history.

  `images` are the last snapshot, `activation` is `eng.evaluate(mparams, images, idx)` (U, B),
  `objective` the final per-image objective (U, B) and `diversity` zeros (U,); `extra` keys
  (method-specific) come after `diversity`, then `history`, `snapshots` and `units` (names).
  """
  images = snaps[max(snaps)]
  return dict(images=images, objective=np.asarray(objective),
              activation=np.asarray(eng.evaluate(mparams, jnp.asarray(images), idx)),
              diversity=np.zeros((eng.U,), np.float32), **extra, history=history,
              snapshots=snaps, units=[str(u) for u in units])
