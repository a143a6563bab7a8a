"""CPU cores as JAX devices: data parallelism on CPU-only hosts.

XLA's CPU backend is one device by default; each operation spreads over the cores through its
intra-op thread pool, which for this network's passes gains only 1.2-1.5x from a second core
(measured in `docs/performance.md`). With one device per core, jobs that split their batch over
the local devices (`cv_jax.sweep`, `cv_jax.occlusion`, `cv_jax.models.data_parallel`) run one
independent slice per core instead, and results do not depend on the device count.

    from cv_jax import devices
    devices.use_cpu_devices()        # before the first JAX computation; or CV_JAX_CPU_DEVICES=2

The `cv-jax` command line honours `--cpu_devices=N` and `$CV_JAX_CPU_DEVICES`. Accelerators
(GPU, TPU) are unaffected: JAX's default backend stays the accelerator.
"""

from __future__ import annotations

import os
import re

ENV = "CV_JAX_CPU_DEVICES"
_XLA_FLAG = "--xla_force_host_platform_device_count"


def _backends_started() -> bool:
  from jax._src import xla_bridge  # JAX has no public "has a backend started?" query
  return xla_bridge.backends_are_initialized()


def requested() -> int:
  """The CPU device count asked for by `$CV_JAX_CPU_DEVICES` (0 when unset: XLA's default)."""
  raw = os.environ.get(ENV, "").strip()
  if not raw:
    return 0
  if raw == "auto":
    return os.cpu_count() or 1
  if not raw.isdigit():
    raise ValueError(f"{ENV} must be a device count or 'auto', got {raw!r}")
  return int(raw)


def use_cpu_devices(n: int | None = None) -> int:
  """Give JAX's CPU backend `n` devices (default: one per core); returns the count in effect.

  Call before JAX's first computation. An explicit `--xla_force_host_platform_device_count` in
  `$XLA_FLAGS` wins and is returned. Raises RuntimeError if JAX already started with another
  count (the count cannot change inside a running process).
  """
  import jax
  n = int(n) if n else (os.cpu_count() or 1)
  if n < 1:
    raise ValueError(f"the CPU device count must be at least 1, got {n}")
  forced = re.search(_XLA_FLAG + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
  if forced:
    return int(forced.group(1))
  if _backends_started():
    have = len(jax.devices("cpu"))
    if have != n:
      raise RuntimeError(f"JAX already started with {have} CPU device(s); ask for {n} before the "
                         f"first JAX computation (or set {ENV}={n} before starting Python)")
    return n
  jax.config.update("jax_num_cpu_devices", n)
  return n
