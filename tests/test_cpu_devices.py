"""One JAX device per CPU core (`cv_jax.devices`): the split paths give the one-device numbers.

A worker subprocess runs with `$CV_JAX_CPU_DEVICES` = 1 and = 2: `models.data_parallel` (a batch
of 5 rows, micro-batches of 2, so rows are padded to 4 per device and dropped again) and
occlusion maps (chunks split over the devices, with and without the per-chunk progress calls).
The two runs must agree bit for bit, and the split forward must match the plain `jax.jit` of
the same function in this process. Random-init InceptionV1 at 64 px keeps it to seconds.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv_jax import devices, models

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ["mixed3a_pre_relu", "mixed4a"]

WORKER = """
import sys
import numpy as np
import jax
import jax.numpy as jnp
from cv_jax import devices
n = devices.use_cpu_devices(devices.requested())
assert jax.device_count() == n == int(sys.argv[2]), (jax.devices(), n)
from cv_jax import models, occlusion
m = models.load("inceptionv1", random_init=0)
x = np.random.default_rng(1).random((5, 64, 64, 3), np.float32)
fwd = models.data_parallel(lambda p, v: m.apply(p, v, LAYERS), micro_batch=2)(m.params(), x)
img = np.random.default_rng(2).random((64, 64, 3), np.float32)
kw = dict(size=24, stride=8, chunk=4)
r = occlusion.occlusion_maps(m, img, "mixed3a_pre_relu", [3, 17], **kw)
rp = occlusion.occlusion_maps(m, img, "mixed3a_pre_relu", [3, 17], progress=True, **kw)
np.savez(sys.argv[1], maps=r.maps, base=r.base, maps_progress=rp.maps,
         **{k: np.asarray(v) for k, v in fwd.items()})
""".replace("LAYERS", repr(LAYERS))


def _run(tmp_path: pathlib.Path, n: int) -> dict:
  out = tmp_path / f"out{n}.npz"
  env = dict(os.environ, CV_JAX_CPU_DEVICES=str(n),
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  env.pop("XLA_FLAGS", None)
  p = subprocess.run([sys.executable, "-c", WORKER, str(out), str(n)], env=env, cwd=REPO,
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  return dict(np.load(out))


def test_two_cpu_devices_give_the_one_device_bits(tmp_path):
  one, two = _run(tmp_path, 1), _run(tmp_path, 2)
  for key in one:
    np.testing.assert_array_equal(one[key], two[key], err_msg=key)
  np.testing.assert_array_equal(one["maps"], one["maps_progress"])
  assert one["maps"].shape == (6, 6, 2)
  # The split, micro-batched forward against one plain program over the whole batch.
  m = models.load("inceptionv1", random_init=0)
  x = np.random.default_rng(1).random((5, 64, 64, 3), np.float32)
  plain = jax.jit(lambda p, v: m.apply(p, v, LAYERS))(m.params(), x)
  for layer in LAYERS:
    assert one[layer].shape == plain[layer].shape
    ref = np.asarray(plain[layer])  # float32 round-off: other batch shapes, other summation orders
    np.testing.assert_allclose(one[layer], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_requested_and_use_cpu_devices_errors(monkeypatch):
  jax.devices()  # this process's backend has started (one CPU device)
  for raw, want in (("", 0), ("3", 3), ("auto", os.cpu_count())):
    monkeypatch.setenv(devices.ENV, raw)
    assert devices.requested() == want
  monkeypatch.setenv(devices.ENV, "two")
  with pytest.raises(ValueError, match="CV_JAX_CPU_DEVICES"):
    devices.requested()
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  have = len(jax.devices("cpu"))
  assert devices.use_cpu_devices(have) == have
  with pytest.raises(RuntimeError, match="already started"):
    devices.use_cpu_devices(have + 1)
  with pytest.raises(ValueError, match="at least 1"):
    devices.use_cpu_devices(-2)


def test_cli_rejects_a_bad_device_count_in_one_line():
  p = subprocess.run([sys.executable, "-m", "cv_jax.cli", "classify", "--cpu_devices=-1", "x.jpg"],
                     cwd=REPO, capture_output=True, text=True, timeout=120,
                     env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert p.returncode == 1
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and "at least 1" in lines[0], p.stderr


def test_data_parallel_pads_trims_and_sees_new_params():
  f = models.data_parallel(lambda p, x: x * p["w"] + jnp.sum(x, axis=1, keepdims=True),
                           micro_batch=2)
  x = np.arange(15, dtype=np.float32).reshape(5, 3)
  p = {"w": jnp.float32(2.0)}
  np.testing.assert_array_equal(np.asarray(f(p, x)), x * 2 + x.sum(1, keepdims=True))
  p["w"] = jnp.float32(-1.0)  # the same dict, changed in place: not the cached copy
  np.testing.assert_array_equal(np.asarray(f(p, x)), -x + x.sum(1, keepdims=True))
  with pytest.raises(ValueError, match="micro_batch"):
    models.data_parallel(lambda p, x: x, micro_batch=0)
