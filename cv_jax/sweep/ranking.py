"""The dataset sweep: spatial-mean activations of every channel, top-k/bottom-k per channel.

One pass over an image source. Each batch is decoded in parallel threads, sharded over all
devices, run through the network (one jit-compiled step for the whole sweep), reduced to the
spatial mean of every channel of the requested layers, and merged into running top-k and
bottom-k tables kept on the devices, split by channel (exact: the batch merged into the sorted
table by rank).

Determinism. Image ids are the source's order. Ties are broken by image id (the smaller id
ranks first, in the top-k and in the bottom-k tables alike). The forward pass runs in fixed
micro-batches of `micro_batch` images per device (`lax.map`), so every image's activations are
bitwise the same whatever the batch size, the decode parallelism or the device count; only
`micro_batch` (and the platform) can change the last bits. The result is therefore exactly
that of sorting the full activation matrix, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cv_jax.data.sources import BatchLoader, Source, open_source
from cv_jax.progress import status

DEFAULT_LAYERS = tuple(f"mixed{b}_pre_relu" for b in
                       ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))
_NO_ID = np.iinfo(np.int32).max  # id of empty table slots and padded rows


@dataclasses.dataclass
class SweepResult:
  """The outcome of a sweep.

  Attributes:
    paths: image names; list index = image id.
    layers: the swept layers (canonical names).
    top_idx, top_val: layer -> (C, k') ids / activations, most activating first (descending;
      ties by smaller id). k' = min(k, number of readable images).
    bot_idx, bot_val: layer -> (C, k'), least activating first (ascending; ties by smaller id).
    failed: (path, reason) of every unreadable image (skipped).
    matrix: layer -> (N, C) float16 spatial means of all images (NaN rows for failed images),
      when the sweep was run with keep_matrix=True; else None.
    info: run details (source, model, counts, images/s, devices, ...).
  """

  paths: list[str]
  layers: list[str]
  top_idx: dict[str, np.ndarray]
  top_val: dict[str, np.ndarray]
  bot_idx: dict[str, np.ndarray]
  bot_val: dict[str, np.ndarray]
  failed: list[tuple[str, str]]
  matrix: dict[str, np.ndarray] | None = None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def k(self) -> int:
    """Table depth k' (the requested k, or fewer if the source has fewer readable images)."""
    return next(iter(self.top_idx.values())).shape[1]

  def ranked(self, layer: str, channel: int, largest: bool = True) -> np.ndarray:
    """Ids of the top-k (largest=True) or bottom-k images of one channel, most extreme first."""
    if layer not in self.top_idx:
      raise ValueError(f"layer {layer!r} was not swept; swept layers: {', '.join(self.layers)}")
    table = self.top_idx[layer] if largest else self.bot_idx[layer]
    if not 0 <= channel < table.shape[0]:
      raise ValueError(f"channel {channel} out of range for {layer} ({table.shape[0]} channels)")
    return table[channel]

  def unit(self, unit, model=None, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, activations) of one unit's top-k (or bottom-k), most extreme first.

    `unit`: a `models.Unit`, "layer:channel", or with `model` also "block/branch:index"
    (e.g. "mixed4a/pool:32"). ValueError for units that cannot be parsed or were not swept.
    """
    from cv_jax.models import Unit
    if model is not None:
      u = Unit.parse(unit, model)
      layer, channel = u.layer, u.channel
    elif isinstance(unit, Unit):
      layer, channel = unit.layer, unit.channel
    else:
      layer, sep, ch = str(unit).strip().rpartition(":")
      if not sep or not ch.lstrip("-").isdigit() or "/" in layer:
        raise ValueError(f"cannot parse unit {unit!r}; use 'layer:channel' (e.g. "
                         "'mixed4a_pre_relu:476'), or pass model= for 'block/branch:index'")
      channel = int(ch)
    ids = self.ranked(layer, channel, largest)
    vals = (self.top_val if largest else self.bot_val)[layer][channel]
    return ids, vals

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Write `sweep_result.npz` + `sweep_result.json` (+ matrices) under `directory`."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in ("top_idx", "top_val", "bot_idx", "bot_val"):
      for l, a in getattr(self, name).items():
        arrays[f"{name}/{l}"] = a
    np.savez(d / "sweep_result.npz", **arrays)
    meta = dict(paths=self.paths, layers=self.layers, failed=[list(f) for f in self.failed],
                info=self.info, matrix=bool(self.matrix))
    if self.matrix:
      for l, m in self.matrix.items():
        target = d / f"matrix_{l}.npy"
        if not (isinstance(m, np.memmap) and pathlib.Path(m.filename).resolve() == target.resolve()):
          np.save(target, np.asarray(m))
    (d / "sweep_result.json").write_text(json.dumps(meta, indent=1))
    return d

  @classmethod
  def load(cls, directory: str | os.PathLike, mmap: bool = True) -> "SweepResult":
    """Read a result written by `save` (matrices memory-mapped unless mmap=False)."""
    d = pathlib.Path(directory)
    if not (d / "sweep_result.json").exists():
      raise ValueError(f"no sweep result in {str(d)!r} (sweep_result.json missing)")
    meta = json.loads((d / "sweep_result.json").read_text())
    tables: dict[str, dict[str, np.ndarray]] = {n: {} for n in ("top_idx", "top_val", "bot_idx", "bot_val")}
    with np.load(d / "sweep_result.npz") as z:
      for key in z.files:
        name, layer = key.split("/", 1)
        tables[name][layer] = z[key]
    matrix = None
    if meta.get("matrix"):
      matrix = {l: np.load(d / f"matrix_{l}.npy", mmap_mode="r" if mmap else None)
                for l in meta["layers"]}
    return cls(paths=meta["paths"], layers=meta["layers"], failed=[tuple(f) for f in meta["failed"]],
               matrix=matrix, info=meta["info"], **tables)


def resolve_layers(model, layers: Sequence[str] | str | None) -> list[str]:
  """Canonical layer names (default: the nine mixedXX_pre_relu); ValueError on unknown names."""
  if layers is None:
    layers = DEFAULT_LAYERS
  if isinstance(layers, str):
    layers = [l for l in layers.split(",") if l.strip()]
  if not layers:
    raise ValueError("no layers to sweep")
  out = []
  for l in layers:
    canon = model.resolve(l.strip())  # ValueError with close matches for unknown names
    if canon not in out:
      out.append(canon)
  return out


def _rank_in_batch(kb, ib):
  """Rank of every batch entry in (key, id, column) order per row: (c, b) int32, a permutation.

  Dense over (c, b, b): cheap for batch-sized b, and unlike XLA CPU's comparator sort it
  vectorises. The column breaks ties between equal (key, id) pairs (padded rows), whose
  values are equal too, so any order of them gives the same table. NaN keys rank last (they
  then land behind the whole table and never enter it).
  """
  b = kb.shape[1]
  col = jnp.arange(b, dtype=jnp.int32)
  nan = jnp.isnan(kb)
  kb = jnp.where(nan, 0.0, kb)
  k_o, i_o, c_o, n_o = kb[:, None, :], ib[:, None, :], col[None, None, :], nan[:, None, :]
  k_s, i_s, c_s, n_s = kb[:, :, None], ib[:, :, None], col[None, :, None], nan[:, :, None]
  tie = (k_o == k_s) & ((i_o < i_s) | ((i_o == i_s) & (c_o < c_s)))
  before = (n_o == n_s) & ((k_o < k_s) | tie) | (~n_o & n_s)
  return jnp.sum(before, axis=2, dtype=jnp.int32)


def _by_rank(rank, *xs):
  """Rows of each x (c, b) reordered so that entry m goes to column rank[:, m], bit for bit.

  A one-hot (c, b, b) sum in int32 (floats are bit-cast): exactly one term per output is
  non-zero, so the sum is the entry's bits; integer sums vectorise on every backend.
  """
  b = rank.shape[1]
  hit = rank[:, None, :] == jnp.arange(b, dtype=jnp.int32)[None, :, None]  # (c, slot, m)
  out = []
  for x in xs:
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    s = jnp.sum(jnp.where(hit, bits[:, None, :], 0), axis=2, dtype=jnp.int32)
    out.append(jax.lax.bitcast_convert_type(s, x.dtype))
  return out


def _count_not_after(kt, it, kb, ib):
  """#(table entries (kt, it) <= (kb, ib)) per batch entry: (c, b) int32, the table sorted.

  A binary search: ceil(log2(k + 1)) rounds of one gather per operand over (c, b), as a
  `fori_loop` so that XLA cannot fuse (and recompute) the rounds into the dense consumer.
  Gathers index the flattened table (faster than a batched gather on XLA CPU).
  """
  c, k = kt.shape
  steps = [1 << e for e in reversed(range(k.bit_length()))]  # 2^floor(log2 k), ..., 2, 1
  steps_a = jnp.asarray(steps, jnp.int32)
  last = (k * jnp.arange(c, dtype=jnp.int32))[:, None] - 1  # flat index of entry -1 of a row
  fk, fi = kt.reshape(-1), it.reshape(-1)

  def round_(r, n):
    probe = n + steps_a[r]  # is table entry probe - 1 still <= the batch entry?
    j = last + jnp.minimum(probe, k)
    tk = fk.at[j].get(mode="promise_in_bounds")
    ti = fi.at[j].get(mode="promise_in_bounds")
    after = (kb < tk) | ((kb == tk) & (ib < ti))
    return jnp.where((probe <= k) & ~after, probe, n)

  # zeros typed like both operands, so the carry varies over shard_map axes when either does
  n0 = jnp.zeros_like(kb, jnp.int32) + jnp.zeros_like(kt[:, :1], jnp.int32)
  return jax.lax.fori_loop(0, len(steps), round_, n0, unroll=2)


def _merge(val, idx, new_val, new_idx, k: int, largest: bool):
  """Exact k best of (running table ∪ batch) per row, ties broken by the smaller id.

  The table is kept sorted by (key, id), key = -value for the top table and value for the
  bottom one. The batch is ranked by (key, id) (a dense b x b count, no comparator sort) and
  put in that order; the two sorted lists are then merged by rank: batch entry m lands at
  pos_b[m] = m + #(table entries before it), found by binary search in the table, and output
  position p takes batch entry cnt[p] = #(pos_b < p) if it lands there (cnt[p+1] > cnt[p]),
  else table entry p - cnt[p]. Same result as sorting table and batch together, bit for bit
  (the sweep step turns -0.0 into 0.0 first); NaN values never enter the table.
  """
  c, b = new_val.shape
  kt = -val if largest else val
  kb = -new_val if largest else new_val
  ib = jnp.broadcast_to(new_idx[None, :], new_val.shape)
  vb, ib = _by_rank(_rank_in_batch(kb, ib), new_val, ib)
  kb = -vb if largest else vb
  pos_b = jnp.arange(b, dtype=jnp.int32)[None, :] + _count_not_after(kt, idx, kb, ib)
  # cnt[p] = #(batch entries placed before position p), p = 0..k; dense but integer-only
  p = jnp.arange(k + 1, dtype=jnp.int32)
  cnt = jnp.sum(pos_b[:, None, :] < p[None, :, None], axis=2, dtype=jnp.int32)
  from_b = cnt[:, 1:] > cnt[:, :k]
  cnt = cnt[:, :k]
  # one flat gather from [table | sorted batch] per output (faster than batched gathers)
  src = jnp.where(from_b, k + cnt, p[None, :k] - cnt) + ((k + b) * jnp.arange(c, dtype=jnp.int32))[:, None]
  out_v = jnp.concatenate([val, vb], axis=1).reshape(-1).at[src].get(mode="promise_in_bounds")
  out_i = jnp.concatenate([idx, ib], axis=1).reshape(-1).at[src].get(mode="promise_in_bounds")
  return out_v, out_i


def _build_step(model, layers: tuple[str, ...], k: int, micro_batch: int, mesh: Mesh):
  """The jitted sweep step, kept on the model (`Network.program`), so repeated sweeps with the
  same settings compile once.

  step(params, state, images, ids, valid) -> (state, acts): forward pass in micro-batches on
  each device (shard_map over the batch axis), spatial means, and the exact merge of the batch
  into the top-k / bottom-k tables, which are split over the devices by channel (`_shard_tables`):
  each device merges the whole batch into its share of every layer's channels.
  """
  key = ("sweep", layers, k, micro_batch, tuple(d.id for d in mesh.devices.flat))
  return model.program(key, lambda: _make_step(model, layers, k, micro_batch, mesh))


def _channel_share(c: int, n_dev: int) -> int:
  """Channels per device when c channels are split over n_dev devices (the last padded)."""
  return -(-c // n_dev)


def _shard_tables(state_np: dict, mesh: Mesh) -> dict:
  """Host tables {layer: {name: (C, k)}} -> device arrays split by channel over the mesh.

  C is padded to a multiple of the device count (padding rows: empty slots, never read back).
  """
  n_dev = mesh.devices.size
  rows = NamedSharding(mesh, P("data"))
  fill = dict(top_val=-np.inf, top_idx=_NO_ID, bot_val=np.inf, bot_idx=_NO_ID)
  out = {}
  for l, tables in state_np.items():
    out[l] = {}
    for name, x in tables.items():
      pad = _channel_share(x.shape[0], n_dev) * n_dev - x.shape[0]
      x = np.concatenate([x, np.full((pad,) + x.shape[1:], fill[name], x.dtype)]) if pad else x
      out[l][name] = jax.device_put(x, rows)
  return out


@functools.lru_cache(maxsize=8)
def _replicator(mesh: Mesh):
  """A jitted identity whose output is replicated on every device of `mesh` (an all-gather)."""
  return jax.jit(lambda s: s, out_shardings=NamedSharding(mesh, P()))


def _gather_tables(state: dict, channels: dict[str, int], mesh: Mesh) -> dict:
  """Device tables split by channel -> host numpy {layer: {name: (C, k)}} (padding dropped)."""
  whole = _replicator(mesh)(state)
  return {l: {name: np.asarray(x)[:channels[l]] for name, x in t.items()} for l, t in whole.items()}


def _make_step(model, layers: tuple[str, ...], k: int, micro_batch: int, mesh: Mesh):
  data = NamedSharding(mesh, P("data"))
  n_dev = mesh.devices.size

  def local_forward(p, x):
    # x: this device's rows; fixed-size micro-batches make the bits batch-size independent.
    xs = x.reshape(x.shape[0] // micro_batch, micro_batch, *x.shape[1:])

    def one(xx):
      out = model.apply(p, xx, layers)
      return {l: (v.mean(axis=(1, 2)) if v.ndim == 4 else v).astype(jnp.float32)
              for l, v in out.items()}
    out = jax.lax.map(one, xs)
    return {l: v.reshape(x.shape[0], -1) for l, v in out.items()}

  forward = jax.shard_map(local_forward, mesh=mesh, in_specs=(P(), P("data")),
                          out_specs=P("data"))

  def local_merge(state, acts, ids, valid):
    # state: this device's channels of every table; acts, ids, valid: the whole batch. Each
    # channel's merge reads only that channel, so the split leaves every bit as on one device.
    dev = jax.lax.axis_index("data")
    new = {}
    for l in layers:
      st = state[l]
      share = st["top_val"].shape[0]
      a = jnp.where(acts[l] == 0, 0.0, acts[l])  # -0.0 -> 0.0, so ties compare as in numpy
      a = jnp.pad(a, ((0, 0), (0, share * n_dev - a.shape[1])))
      a = jax.lax.dynamic_slice_in_dim(a, dev * share, share, axis=1)
      tv, ti = _merge(st["top_val"], st["top_idx"], jnp.where(valid[:, None], a, -jnp.inf).T,
                      ids, k, largest=True)
      bv, bi = _merge(st["bot_val"], st["bot_idx"], jnp.where(valid[:, None], a, jnp.inf).T,
                      ids, k, largest=False)
      new[l] = dict(top_val=tv, top_idx=ti, bot_val=bv, bot_idx=bi)
    return new

  merge = jax.shard_map(local_merge, mesh=mesh, in_specs=(P("data"), P(), P(), P()),
                        out_specs=P("data"))

  def step(p, state, images, ids, valid):
    acts = forward(p, images)
    return merge(state, acts, ids, valid), acts

  return jax.jit(step, donate_argnums=(1,), out_shardings=(data, data))


def _fingerprint(model, source: Source, layers, k: int, micro_batch: int) -> dict:
  h = hashlib.sha1()
  for p in source.paths:
    h.update(p.encode("utf-8", "surrogateescape") + b"\0")
  ph = hashlib.sha1()
  for name, p in sorted(model.params().items()):
    for key in ("kernel", "bias"):
      ph.update(name.encode() + np.asarray(p[key]).tobytes())
  return dict(source=source.uri, n_images=len(source), paths_sha1=h.hexdigest(),
              resize=source.resize, crop=source.crop, model=model.name,
              lrn=getattr(model, "lrn", None), params_sha1=ph.hexdigest(), layers=list(layers),
              k=int(k), micro_batch=int(micro_batch))


def _checkpoint_manager(workdir: pathlib.Path):
  import orbax.checkpoint as ocp
  # Synchronous saves; orbax writes into a tmp dir and renames it, so a kill -9 mid-save leaves
  # the previous checkpoint intact (the stale tmp dir is removed on the next start).
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False,
                                         create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager((workdir / "checkpoints").resolve(), options=options,
                               item_names=("state", "meta"))


def run(model, source: Source | str, layers: Sequence[str] | None = None, *, k: int = 200,
        batch_size: int = 64, workdir: str | os.PathLike | None = None, keep_matrix: bool = False,
        progress: bool = True, micro_batch: int = 8, workers: int = 8, checkpoint_every: int = 50,
        resize: int = 256, crop: int = 224, max_images: int | None = None,
        subset_seed: int | None = None, stop_after: int | None = None) -> SweepResult:
  """Sweep `source` with `model`: top-k / bottom-k images of every channel of `layers`.

  Args:
    model: a `cv_jax.models` network.
    source: a Source (`cv_jax.data.open_source`) or a URI string ("folder:/path",
      "tfds:imagenet2012:train"); `resize`, `crop`, `max_images`, `subset_seed` apply to URIs.
    layers: layer names (default: the nine mixedXX_pre_relu); Caffe aliases accepted for BVLC.
    k: table depth (top-k and bottom-k per channel).
    batch_size: global images per step; a multiple of micro_batch * device count.
    workdir: if given, orbax checkpoints of the sweep state go to workdir/checkpoints every
      `checkpoint_every` batches, the matrices (keep_matrix) to workdir/matrix_<layer>.npy, and
      the result and report.json to workdir; a run restarted with the same settings resumes
      from the last checkpoint and ends with exactly the uninterrupted result.
    keep_matrix: also store every image's activations (N, C) float16 per layer.
    progress: tqdm progress bar with images/s.
    micro_batch: images per device per forward call inside the step (fixes the bits).
    workers: decoding threads.
    stop_after: stop (after checkpointing) once this many images are done; for tests/benchmarks.

  Returns:
    SweepResult. Unreadable images are skipped and listed in `failed`.
  """
  from tqdm.auto import tqdm

  if isinstance(source, (str, os.PathLike)):
    source = open_source(source, resize=resize, crop=crop, max_images=max_images,
                         subset_seed=subset_seed)
  layers = resolve_layers(model, layers)
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}")
  if micro_batch < 1:
    raise ValueError(f"micro_batch must be positive, got {micro_batch}")
  n_dev = jax.device_count()
  if batch_size < 1 or batch_size % (micro_batch * n_dev):
    raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of micro_batch "
                     f"({micro_batch}) x devices ({n_dev}) = {micro_batch * n_dev}")
  n = len(source)
  if n == 0:
    raise ValueError(f"source {source.uri} has no images")
  if n >= _NO_ID:
    raise ValueError(f"source has {n} images; at most {_NO_ID - 1} are supported")
  crop_size = source.crop
  if not crop_size:
    raise ValueError("sweeps need a fixed image size: give the source a crop size")

  # Channels and shapes from one abstract evaluation.
  params = model.params()
  shapes = jax.eval_shape(lambda p, x: model.apply(p, x, layers), params,
                          jax.ShapeDtypeStruct((1, crop_size, crop_size, 3), jnp.float32))
  channels = {l: int(shapes[l].shape[-1]) for l in layers}

  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  rep = NamedSharding(mesh, P())
  data = NamedSharding(mesh, P("data"))

  step_fn = _build_step(model, tuple(layers), int(k), int(micro_batch), mesh)

  def empty_state():
    return {l: dict(top_val=np.full((c, k), -np.inf, np.float32),
                    top_idx=np.full((c, k), _NO_ID, np.int32),
                    bot_val=np.full((c, k), np.inf, np.float32),
                    bot_idx=np.full((c, k), _NO_ID, np.int32)) for l, c in channels.items()}

  state_np = empty_state()
  position, failed = 0, []
  fingerprint = _fingerprint(model, source, layers, k, micro_batch)
  mngr = None
  wd = pathlib.Path(workdir) if workdir is not None else None
  is_main = jax.process_index() == 0
  if wd is not None:
    import orbax.checkpoint as ocp
    wd.mkdir(parents=True, exist_ok=True)
    mngr = _checkpoint_manager(wd)
    latest = mngr.latest_step()
    if latest is not None:
      restored = mngr.restore(latest, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state_np), meta=ocp.args.JsonRestore()))
      meta = restored["meta"]
      diff = {key: (meta["fingerprint"].get(key), val) for key, val in fingerprint.items()
              if meta["fingerprint"].get(key) != val}
      if diff:
        detail = "; ".join(f"{key}: checkpoint {a!r} vs now {b!r}" for key, (a, b) in diff.items())
        raise ValueError(f"workdir {str(wd)!r} holds a sweep with different settings ({detail}); "
                         "use a new workdir or delete the old one")
      state_np = jax.tree.map(np.asarray, restored["state"])
      position = int(meta["position"])
      failed = [tuple(f) for f in meta["failed"]]

  matrix = None
  if keep_matrix:
    matrix = {}
    for l, c in channels.items():
      if wd is not None:
        f = wd / f"matrix_{l}.npy"
        if position > 0:
          if not f.exists():
            raise ValueError(f"workdir {str(wd)!r} holds a partial sweep without the activation "
                             "matrix; resume it with keep_matrix=False or use a new workdir")
          matrix[l] = np.load(f, mmap_mode="r+")
          if matrix[l].shape != (n, c):
            raise ValueError(f"{f} has shape {matrix[l].shape}, expected {(n, c)}")
        else:
          matrix[l] = np.lib.format.open_memmap(f, mode="w+", dtype=np.float16, shape=(n, c))
      else:
        matrix[l] = np.zeros((n, c), np.float16)

  n_proc, pid = jax.process_count(), jax.process_index()
  local_rows = batch_size // n_proc
  loader = BatchLoader(source, batch_size, workers=workers,
                       rows=(pid * local_rows, (pid + 1) * local_rows))

  def to_global(x, sharding):
    if n_proc == 1:
      return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(sharding, x)

  state = _shard_tables(state_np, mesh)
  p_dev = jax.device_put(params, rep)

  def save(pos):
    if mngr is None or mngr.latest_step() == pos:
      return
    import orbax.checkpoint as ocp
    if matrix is not None and wd is not None:
      for m in matrix.values():
        m.flush()
    host = _gather_tables(state, channels, mesh)
    mngr.save(pos, args=ocp.args.Composite(
        state=ocp.args.StandardSave(host),
        meta=ocp.args.JsonSave(dict(position=pos, failed=[list(f) for f in failed],
                                    fingerprint=fingerprint))), force=True)
    mngr.wait_until_finished()

  t0 = time.perf_counter()
  start_pos = position
  # Batch sizes this model's step was already compiled for (status line only before a compile).
  compiled = model.program(("sweep compiled", tuple(layers), int(k), int(micro_batch)), set)
  if progress and position < n and batch_size not in compiled:
    status(f"compiling the sweep step for {len(layers)} layer(s), batch {batch_size} "
           f"(the first batch waits for it) ...")
  compiled.add(batch_size)
  bar = tqdm(total=n, initial=position, unit="img", disable=not progress, dynamic_ncols=True,
             desc=f"sweep {model.name}", smoothing=0.05)
  batches_since = 0
  in_flight = None
  try:
    for s, images, valid, failures in loader(position):
      local_ids = np.arange(s + loader.rows[0], s + loader.rows[1])
      ids = np.where(valid, local_ids, _NO_ID).astype(np.int32)
      for i, why in failures:
        failed.append((source.paths[i], why))
        if progress:
          bar.write(f"skipped unreadable image {source.paths[i]}: {why}")
      state, acts = step_fn(p_dev, state, to_global(images, data), to_global(ids, data),
                            to_global(valid, data))
      # Back-pressure: at most two steps in flight (async dispatch would otherwise queue every
      # decoded batch in memory when decoding outruns the network).
      if in_flight is not None:
        jax.block_until_ready(in_flight)
      in_flight = acts
      done = min(s + batch_size, n)
      if matrix is not None:
        if n_proc > 1:
          from jax.experimental import multihost_utils
          acts_h = multihost_utils.process_allgather(acts, tiled=True)
          valid_all = multihost_utils.process_allgather(valid, tiled=True)
        else:
          acts_h, valid_all = jax.tree.map(np.asarray, acts), valid
        rows = done - s
        for l in layers:
          a = np.array(acts_h[l][:rows], np.float32)
          a[~valid_all[:rows]] = np.nan
          matrix[l][s:done] = a.astype(np.float16)
      position = done
      bar.update(done - s)
      batches_since += 1
      if mngr is not None and (batches_since >= checkpoint_every or position >= n):
        save(position)
        batches_since = 0
      if stop_after is not None and position >= stop_after and position < n:
        save(position)
        break
  finally:
    bar.close()
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - t0
  state_np = _gather_tables(state, channels, mesh)

  n_ok = n - len(failed) if position >= n else None
  kk = k if n_ok is None else min(k, n_ok)
  tables: dict[str, dict[str, np.ndarray]] = {x: {} for x in ("top_idx", "top_val", "bot_idx", "bot_val")}
  for l in layers:
    for x in tables:
      tables[x][l] = state_np[l][x][:, :kk]
  info = dict(source=source.uri, model=model.name, n_images=n, n_done=position,
              n_failed=len(failed), complete=position >= n, k=int(kk), k_requested=int(k),
              batch_size=batch_size, micro_batch=micro_batch, devices=n_dev,
              processes=n_proc, workers=workers, elapsed_s=elapsed,
              images_per_s=(position - start_pos) / elapsed if elapsed > 0 else None,
              resumed_from=start_pos, fingerprint=fingerprint)
  result = SweepResult(paths=list(source.paths), layers=list(layers), failed=failed,
                       matrix=matrix, info=info, **tables)
  if wd is not None and is_main and position >= n:
    result.save(wd)
    report = dict(info, failed=[dict(path=p, reason=r) for p, r in failed])
    (wd / "report.json").write_text(json.dumps(report, indent=1))
  return result
