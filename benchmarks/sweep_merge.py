"""The sweep's exact top-k merge alone: cv_jax's `_merge` vs the dense merge it replaced.

    python benchmarks/sweep_merge.py                       # k=200, batch 32, six channel counts
    taskset -c 0 python benchmarks/sweep_merge.py          # one core

Both merges get the same inputs: a full sorted table (k entries per channel, ids 0..k-1) and a
batch of b new entries (ids k..k+b-1), float32 values on a 1/64 grid, so that ties between the
table and the batch and inside the batch are common. `dense` is the previous implementation
(a comparator sort of the batch and two dense (C, k, b) comparison tensors); `search` is
`cv_jax.sweep.ranking._merge`. Both are checked bit for bit against each other first.

Calls are interleaved (for each repetition and channel count: one timed block of each merge,
in alternating order); the table gives the median ms per call, the ratio, and a `step` row
with the nine GoogLeNet mixed layers' channel counts, top and bottom tables, in one jit (what
one sweep step merges). The load average is printed before and after; figures taken with a
load above 1.0 per core are marked unreliable.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

flags.DEFINE_list("channels", ["256", "480", "512", "528", "832", "1024"], "Channel counts C.")
flags.DEFINE_integer("k", 200, "Table depth.")
flags.DEFINE_integer("batch", 32, "Batch entries merged per call (b).")
flags.DEFINE_integer("reps", 7, "Interleaved repetitions (the median is reported).")
flags.DEFINE_integer("calls", 10, "Calls per timed block.")
FLAGS = flags.FLAGS

STEP_CHANNELS = (256, 480, 512, 512, 512, 528, 832, 832, 1024)  # mixed3a..mixed5b


def dense_merge(val, idx, new_val, new_idx, k: int, largest: bool):
  """The previous `_merge`: comparator sort of the batch, dense (C, k, b) and (C, k+1, b) counts."""
  import jax
  import jax.numpy as jnp
  c, b = new_val.shape
  kt = -val if largest else val
  kb = -new_val if largest else new_val
  ib = jnp.broadcast_to(new_idx[None, :], new_val.shape)
  kb, ib, vb = jax.lax.sort((kb, ib, new_val), dimension=1, num_keys=2)
  b_first = (kb[:, None, :] < kt[:, :, None]) | (
      (kb[:, None, :] == kt[:, :, None]) & (ib[:, None, :] < idx[:, :, None]))
  pos_b = jnp.arange(b, dtype=jnp.int32)[None, :] + jnp.sum(~b_first, axis=1, dtype=jnp.int32)
  p = jnp.arange(k + 1, dtype=jnp.int32)
  cnt = jnp.sum(pos_b[:, None, :] < p[None, :, None], axis=2, dtype=jnp.int32)
  from_b = cnt[:, 1:] > cnt[:, :k]
  cnt = cnt[:, :k]
  jb, jt = jnp.minimum(cnt, b - 1), p[None, :k] - cnt
  out_v = jnp.where(from_b, jnp.take_along_axis(vb, jb, 1), jnp.take_along_axis(val, jt, 1))
  out_i = jnp.where(from_b, jnp.take_along_axis(ib, jb, 1), jnp.take_along_axis(idx, jt, 1))
  return out_v, out_i


def inputs(rng, c: int, k: int, b: int, largest: bool):
  """(val, idx, new_val, new_idx): a sorted full table and a batch, values with ties."""
  v = (np.round(rng.normal(size=(c, k + b)) * 64) / 64).astype(np.float32)
  tab = v[:, :k]
  ids = np.broadcast_to(np.arange(k, dtype=np.int32), (c, k))
  order = np.lexsort((ids, -tab if largest else tab), axis=1)
  return (np.take_along_axis(tab, order, 1), np.take_along_axis(ids, order, 1).astype(np.int32),
          np.ascontiguousarray(v[:, k:]), np.arange(k, k + b, dtype=np.int32))


def main(argv):
  del argv
  import jax
  from benchmarks.common import load_per_core
  from cv_jax.sweep.ranking import _merge

  k, b = FLAGS.k, FLAGS.batch
  chans = [int(c) for c in FLAGS.channels]
  rng = np.random.default_rng(0)
  load0, up0 = load_per_core(), os.getloadavg()
  print(f"sweep merge: k={k}, b={b}, devices={jax.device_count()}, cpus={len(os.sched_getaffinity(0))}, "
        f"load before {up0[0]:.2f} {up0[1]:.2f} {up0[2]:.2f}")

  impls = dict(dense=dense_merge, search=_merge)
  cases = {}
  for c in chans:
    cases[str(c)] = [inputs(rng, c, k, b, True)]
  cases["step"] = [inputs(rng, c, k, b, lg) for c in STEP_CHANNELS for lg in (True, False)]
  flags_step = [lg for _ in STEP_CHANNELS for lg in (True, False)]

  def program(fn, name):
    if name == "step":
      return jax.jit(lambda args: [fn(*a, k, lg) for a, lg in zip(args, flags_step)])
    return jax.jit(lambda args: [fn(*args[0], k, True)])

  progs = {(n, c): program(f, c) for n, f in impls.items() for c in cases}
  for c, args in cases.items():
    outs = {n: jax.block_until_ready(progs[(n, c)](args)) for n in impls}
    for (va, ia), (vb, ib) in zip(outs["dense"], outs["search"]):
      if not (np.array_equal(np.asarray(va), np.asarray(vb))
              and np.array_equal(np.asarray(ia), np.asarray(ib))):
        raise SystemExit(f"sweep_merge: error: the merges differ for C={c}")

  times = {key: [] for key in progs}
  for rep in range(FLAGS.reps):
    for c, args in cases.items():
      for n in (impls if rep % 2 == 0 else reversed(list(impls))):
        f = progs[(n, c)]
        t = time.perf_counter()
        for _ in range(FLAGS.calls):
          out = f(args)
        jax.block_until_ready(out)
        times[(n, c)].append((time.perf_counter() - t) / FLAGS.calls * 1e3)

  load1, up1 = load_per_core(), os.getloadavg()
  flag = "" if max(load0, load1) <= 1.0 else "  (UNRELIABLE: load above 1.0 per core)"
  print(f"{'C':>6} {'dense ms':>10} {'search ms':>10} {'speed-up':>9}")
  for c in cases:
    d, s = np.median(times[("dense", c)]), np.median(times[("search", c)])
    print(f"{c:>6} {d:10.3f} {s:10.3f} {d / s:8.2f}x")
  print(f"(step = {len(STEP_CHANNELS)} layers x top and bottom in one jit; median of {FLAGS.reps})")
  print(f"load after {up1[0]:.2f} {up1[1]:.2f} {up1[2]:.2f}{flag}")


if __name__ == "__main__":
  app.run(main)
