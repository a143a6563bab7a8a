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


def channels_last(obj):
  """`obj` in PyTorch's channels-last memory format: a 4-D tensor, or a (nested) dict of tensors
  (only the 4-D ones change), or an `nn.Module` (its parameters and buffers)."""
  import torch
  if isinstance(obj, torch.nn.Module):
    return obj.to(memory_format=torch.channels_last)
  if isinstance(obj, dict):
    return {k: channels_last(v) for k, v in obj.items()}
  if isinstance(obj, torch.Tensor) and obj.dim() == 4:
    return obj.contiguous(memory_format=torch.channels_last)
  return obj


def faster_torch_layout(make, reps: int = 2):
  """The stronger of a PyTorch peer's two memory formats, measured here.

  `make(channels_last: bool)` returns a zero-argument callable (one timed unit of the peer).
  Each layout runs once to warm up and then `reps` times, alternating; returns
  (callable, "channels-last" or "NCHW") of the one with the smaller median time.
  """
  runs = {False: make(False), True: make(True)}
  for fn in runs.values():
    fn()
  times = {False: [], True: []}
  for _ in range(reps):
    for cl, fn in runs.items():
      t = time.perf_counter()
      fn()
      times[cl].append(time.perf_counter() - t)
  best = min(times, key=lambda cl: float(np.median(times[cl])))
  return runs[best], ("channels-last" if best else "NCHW")
