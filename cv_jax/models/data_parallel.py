"""One batched function, split over the local devices and run in micro-batches on each.

    fwd = data_parallel(lambda p, x: model.apply(p, x, ["softmax2"]), micro_batch=8)
    probs = fwd(model.params(), images)["softmax2"]

On a CPU host started with one device per core (`cv_jax.devices.use_cpu_devices`) every core
runs its own slice; on one GPU or one CPU device it is one program of micro-batches. Fixed-size
micro-batches keep each row's numbers independent of the batch size and the device count.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_parallel(fn: Callable[[Any, jax.Array], Any], *, micro_batch: int | None = None,
                  devices: Sequence[jax.Device] | None = None) -> Callable[[Any, Any], Any]:
  """`fn(params, x)` (a pytree of arrays with x's leading batch axis) as `g(params, x)`.

  g splits x's rows evenly over `devices` (default: every local device of JAX's default
  backend), runs `fn` on each device's rows in consecutive micro-batches of `micro_batch` rows
  (None: all of them at once) and returns the rows in order. Batches that are not a multiple of
  devices x micro_batch are padded with copies of their last row, and the padding is dropped.
  One program is compiled per input shape.
  """
  devs = list(devices) if devices is not None else jax.local_devices()
  if micro_batch is not None and int(micro_batch) < 1:
    raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
  mesh = Mesh(np.asarray(devs), ("data",))
  rows, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

  def local(p, x):
    if micro_batch is None or x.shape[0] == micro_batch:
      return fn(p, x)
    xs = x.reshape(x.shape[0] // micro_batch, micro_batch, *x.shape[1:])
    out = jax.lax.map(lambda xx: fn(p, xx), xs)
    return jax.tree.map(lambda v: v.reshape(x.shape[0], *v.shape[2:]), out)

  program = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")),
                                  out_specs=P("data")))

  placed: dict = {}  # the last params' leaves and their replicated copy

  def g(params, x):
    n = x.shape[0]
    if n == 0:
      raise ValueError("data_parallel: empty batch")
    unit = len(devs) * (int(micro_batch) if micro_batch else 1)
    padded = -(-n // unit) * unit
    if padded != n:
      x = jnp.concatenate([jnp.asarray(x), jnp.repeat(jnp.asarray(x)[-1:], padded - n, 0)])
    leaves = jax.tree.leaves(params)  # same leaf objects: reuse their replicated copies
    if len(leaves) != len(placed.get("leaves", ())) or any(
        a is not b for a, b in zip(leaves, placed["leaves"])):
      placed.update(leaves=leaves, value=jax.device_put(params, rep))
    out = program(placed["value"], jax.device_put(x, rows))
    return out if padded == n else jax.tree.map(lambda v: v[:n], out)

  return g
