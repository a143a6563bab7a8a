"""`occlusion_maps`: every occluder position of one image in one jit-compiled program.

Positions are processed in chunks of `chunk` occluded copies (vmapped mask construction + one
batched forward pass truncated at the layer, or the exact incremental pass of
`cv_jax.occlusion.incremental`), chunks run in a `lax.map`. All channels of the layer are
computed at once, so asking for many units of one layer is free.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from cv_jax.models import Network, Unit, network
from cv_jax.occlusion import incremental as inc
from cv_jax.occlusion.cost import default_chunk
from cv_jax.occlusion.occluder import Fill, check_image, fill_arrays, occluder_size, occluder_starts
from cv_jax.occlusion.result import OcclusionResult
from cv_jax.progress import status


@dataclasses.dataclass
class _Compiled:
  """A jitted maps program and the argument shapes it has been called (compiled) with."""
  fn: Callable
  shapes: set = dataclasses.field(default_factory=set)


def _unit_spatial_mean(y: jax.Array) -> jax.Array:
  return jnp.mean(y, axis=(1, 2)) if y.ndim == 4 else y.reshape(y.shape[0], -1)


def _program(model: Network, layer: str, size: int, fill_kind: str, incremental: bool = True):
  """jit(params, image, fill_img, colours (K, B, 3), rows (K, B), cols (K, B))
  -> (activations (K, B, channels), un-occluded activations (channels,)).

  One compiled program per (model, layer, size, fill kind, incremental) and input shapes, kept
  on the model (`Network.program`). With `incremental` (block-concat layers only) the exact
  dirty-window forward pass of `cv_jax.occlusion.incremental` is used, else the plain batched
  forward on full occluded copies.
  """
  return _compiled(model, layer, size, fill_kind, incremental).fn


def _compiled(model: Network, layer: str, size: int, fill_kind: str,
              incremental: bool = True) -> _Compiled:
  incremental = incremental and inc.supported(model, layer)
  return model.program(("occlusion", layer, size, fill_kind, incremental),
                       lambda: _Compiled(_build(model, layer, size, fill_kind, incremental)))


def _build(model: Network, layer: str, size: int, fill_kind: str, incremental: bool) -> Callable:
  def squares(image, fill_img, colours, rows, cols):
    if fill_kind == "image":
      return jax.vmap(lambda r, c: jax.lax.dynamic_slice(fill_img, (r, c, 0), (size, size, 3)))(
          rows, cols)
    return jnp.broadcast_to(colours[:, None, None, :], (rows.shape[0], size, size, 3))

  def chunk_plain(params, image, fill_img, colours, rows, cols):
    h, w = image.shape[:2]
    ri = jnp.arange(h)
    ci = jnp.arange(w)

    def one(r, c, colour):
      m = ((ri >= r) & (ri < r + size))[:, None, None] & ((ci >= c) & (ci < c + size))[None, :, None]
      src = fill_img if fill_kind == "image" else colour[None, None, :]
      return jnp.where(m, src, image)

    x = jax.vmap(one)(rows, cols, colours)
    return _unit_spatial_mean(model.apply(params, x, [layer])[layer])

  def run(params, image, fill_img, colours, rows, cols):
    if not incremental:
      base = _unit_spatial_mean(model.apply(params, image[None], [layer])[layer])[0]
      return jax.lax.map(lambda a: chunk_plain(params, image, fill_img, *a),
                         (colours, rows, cols)), base
    plan = inc.Plan(model, layer, image.shape[:2])
    maps = plan.base_maps(params, network.preprocess(model.spec, image[None]))
    target = plan.target_base(params, maps)

    def chunk_inc(a):
      c, r, q = a
      sq = network.preprocess(model.spec, squares(image, fill_img, c, r, q))
      return inc.spatial_means(plan, params, maps, target, sq, jnp.stack([r, q], axis=1))

    return jax.lax.map(chunk_inc, (colours, rows, cols)), jnp.mean(target, axis=(0, 1))

  devs = jax.local_devices()
  if len(devs) == 1:
    return jax.jit(run)
  # Several local devices (e.g. one per CPU core, `cv_jax.devices`): the chunks are split over
  # them, each device runs the same chunk program on its share (the unoccluded pass on each).
  mesh = jax.sharding.Mesh(np.asarray(devs), ("d",))
  P = jax.sharding.PartitionSpec
  split = jax.shard_map(run, mesh=mesh, in_specs=(P(), P(), P(), P("d"), P("d"), P("d")),
                        out_specs=(P("d"), P()))

  def run_split(params, image, fill_img, colours, rows, cols):
    if colours.shape[0] % len(devs):
      return run(params, image, fill_img, colours, rows, cols)
    return split(params, image, fill_img, colours, rows, cols)

  return jax.jit(run_split)


def chunk_multiple() -> int:
  """Chunks per call that keep every local device busy (the program splits chunks over them)."""
  return jax.local_device_count()


def _resolve_units(model: Network, layer: str | None, units) -> tuple[str, list[Unit]]:
  if units is not None and not isinstance(units, (list, tuple)):
    units = [units]
  parsed: list[Unit] = []
  for u in units or []:
    if isinstance(u, (int, np.integer)):
      if layer is None:
        raise ValueError("integer units need a layer")
      parsed.append(Unit.from_channel(layer, int(u), model))
    else:
      parsed.append(Unit.parse(u, model))
  if layer is None:
    if not parsed:
      raise ValueError("give a layer or at least one unit")
    layer = parsed[0].layer
  layer = model.resolve(layer)
  bad = [str(u) for u in parsed if u.layer != layer]
  if bad:
    raise ValueError(f"units {bad} are not in layer {layer!r} (one layer per occlusion_maps call; "
                     f"the paper's units live in the pre-ReLU concat, e.g. 'mixed4a_pre_relu')")
  if not parsed:
    parsed = [Unit(layer, c) for c in range(model.channels(layer))]
  return layer, parsed


def occlusion_maps(model: Network, image, layer: str | None, units=None, *, size: int | float = 90,
                   stride: int = 2, fill: Fill = "mean", chunk: int | None = None,
                   progress: bool = False, incremental: bool = True) -> OcclusionResult:
  """Activation of `units` of `layer` for every occluder position over `image`.

  image: (H, W, 3) float RGB in [0, 1] (e.g. `cv_jax.data.load_image`). layer: a layer name
  (Caffe aliases accepted for BVLC); None takes the layer of the units. units: channel indices,
  unit strings ("mixed4a/3x3:10", "mixed4a_pre_relu:257") or `Unit`s, all of `layer`; None =
  every channel. size: pixels, or a fraction of the shorter side. stride: grid step in pixels.
  fill: see `occlude`. chunk: positions per forward pass (default `default_chunk`). progress:
  a tqdm bar per chunk (runs the same compiled chunk program once per chunk; without it the whole
  scan is one call). incremental: for block-concat layers, compute each layer only on the window
  the occluder can change (exact; ~1.9x faster to mixed4a on a 2-core CPU); False: full
  forward passes.

  Returns an `OcclusionResult` (maps (rows, cols, units), base (units,), starts, size).
  """
  from tqdm import tqdm
  img = check_image(image)
  layer, unit_list = _resolve_units(model, layer, units)
  size = occluder_size(size, img.shape)
  rs = occluder_starts(img.shape[0], size, stride)
  cs = occluder_starts(img.shape[1], size, stride)
  kind, colours, fill_img = fill_arrays(img, fill, size, rs, cs)
  n = len(rs) * len(cs)
  if chunk is None:
    chunk = default_chunk(model, layer, img.shape)
  chunk = int(max(1, min(chunk, n)))
  per = chunk_multiple()  # chunks per call: a multiple of the local devices
  n_chunks = -(-n // chunk)
  n_chunks = -(-n_chunks // per) * per
  pad = n_chunks * chunk - n
  rows = np.repeat(rs, len(cs))
  cols = np.tile(cs, len(rs))
  # Pad with copies of the last position (results dropped).
  rows = np.concatenate([rows, np.full(pad, rows[-1], np.int32)]).reshape(n_chunks, chunk)
  cols = np.concatenate([cols, np.full(pad, cols[-1], np.int32)]).reshape(n_chunks, chunk)
  colours = np.concatenate([colours, np.repeat(colours[-1:], pad, 0)]).reshape(n_chunks, chunk, 3)

  prog = _compiled(model, layer, size, kind, incremental)
  fn = prog.fn
  shapes = (img.shape, chunk, per if progress else n_chunks)
  if progress and shapes not in prog.shapes:
    status(f"compiling the occlusion program for {layer} ({n} positions, {chunk} per pass) ...")
  prog.shapes.add(shapes)
  params = model.params()
  img_j, fill_j = jnp.asarray(img), jnp.asarray(fill_img)
  idx = np.asarray([u.channel for u in unit_list])
  if progress:
    parts = []
    for k in tqdm(range(0, n_chunks, per), unit="chunk", desc=f"occlusion {layer}"):
      sl = slice(k, k + per)
      out, base_all = fn(params, img_j, fill_j, colours[sl], rows[sl], cols[sl])
      parts.append(np.asarray(out)[..., idx])
    acts = np.concatenate(parts)
  else:
    out, base_all = fn(params, img_j, fill_j, colours, rows, cols)
    acts = np.asarray(out)[..., idx]
  acts = acts.reshape(n_chunks * chunk, len(idx))[:n]
  base = np.asarray(base_all)[idx]
  return OcclusionResult(maps=acts.reshape(len(rs), len(cs), len(idx)).astype(np.float32),
                         base=base.astype(np.float32), starts=(rs, cs), size=size,
                         units=tuple(unit_list), layer=layer, stride=stride,
                         fill=fill if isinstance(fill, str) else "custom")
