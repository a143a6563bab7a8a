"""Helpers shared by the benchmarks (no absl flags here, so any benchmark may import it)."""

from __future__ import annotations

import os
import time

import numpy as np


def load_per_core() -> float:
  """1-minute load average divided by the number of cores."""
  return os.getloadavg()[0] / (os.cpu_count() or 1)


def peak_flops(n: int = 2048, reps: int = 3) -> tuple[float, float]:
  """Measured float32 matmul FLOP/s of an n x n product: (jax, torch); torch nan if absent."""
  import jax
  import jax.numpy as jnp
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  best = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(f(a))
    best.append(time.perf_counter() - t)
  jp = 2 * n ** 3 / min(best)
  tp = float("nan")
  try:
    import torch
    b = torch.rand(n, n)
    b @ b
    best = []
    for _ in range(reps):
      t = time.perf_counter()
      b @ b
      best.append(time.perf_counter() - t)
    tp = 2 * n ** 3 / min(best)
  except ImportError:
    pass
  return jp, tp


def conv_flops(model, size: int, upto: str | None = None) -> float:
  """2 x multiply-adds of every conv/dense layer for one `size` px image (through `upto`)."""
  import jax
  import jax.numpy as jnp
  from cv_jax.weights import param_shapes
  shapes = param_shapes(model.spec)
  convs = [n for n in shapes if n != "softmax2"]
  outs = jax.eval_shape(
      lambda p, x: model.apply(p, x, [f"{n}_pre_relu" for n in convs]),
      model.params(), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  order = list(model.layer_names)
  limit = order.index(model.resolve(upto)) if upto else len(order)
  macs = 0
  for n in convs:
    if order.index(f"{n}_pre_relu") > limit:
      continue
    kh, kw, cin, cout = shapes[n]["kernel"]
    _, h, w, _ = outs[f"{n}_pre_relu"].shape
    macs += h * w * kh * kw * cin * cout
  if upto is None or limit >= order.index("softmax2_pre_activation"):
    cin, cout = shapes["softmax2"]["kernel"]
    macs += cin * cout
  return 2.0 * macs
