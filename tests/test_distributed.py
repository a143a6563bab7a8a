"""Two `jax.distributed` processes on 127.0.0.1 (CPU, gloo collectives): the sweep and a batch of
occlusion maps give results bitwise identical to one process.

Both workers are launched as subprocesses with
`jax.distributed.initialize(coordinator_address="127.0.0.1:PORT", num_processes=2,
process_id=i)`; each sees one CPU device, so the sweep's mesh spans the two processes and its
top-k merge is a cross-process collective. Small and bounded: random-init InceptionV1, 64 px
generated images, one layer; a 240 s timeout per worker.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
from PIL import Image

from cv_jax import models, occlusion
from cv_jax.sweep import SweepResult, run

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYER = "mixed3a_pre_relu"

WORKER = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, pid, images, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                           process_id=pid, initialization_timeout=120)
assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
import numpy as np
from cv_jax import models, occlusion
from cv_jax.sweep import run
m = models.load("inceptionv1", random_init=0)
res = run(m, f"folder:{images}", ["LAYER"], k=6, batch_size=8, micro_batch=2, resize=72, crop=64,
          progress=False, workers=1)
imgs = np.load(f"{images}/occlusion_queries.npy")
maps = occlusion.occlusion_maps_batch(m, list(imgs), "LAYER", [3, 17], size=24, stride=20)
if pid == 0:
  res.save(f"{out}/sweep")
  np.save(f"{out}/maps.npy", np.stack([r.maps for r in maps]))
  np.save(f"{out}/base.npy", np.stack([r.base for r in maps]))
jax.distributed.shutdown()
""".replace("LAYER", LAYER)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _images(root: pathlib.Path, n: int = 12) -> np.ndarray:
  rng = np.random.default_rng(5)
  for i in range(n):
    img = np.clip(rng.integers(0, 256, 3) + rng.normal(0, 50, (80, 76, 3)), 0, 255)
    Image.fromarray(img.astype(np.uint8)).save(root / f"img_{i:02d}.png")
  queries = rng.random((3, 64, 64, 3)).astype(np.float32)  # 3 images over 2 processes
  np.save(root / "occlusion_queries.npy", queries)
  return queries


def test_two_processes_equal_one(tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  queries = _images(images)
  out = tmp_path / "out"
  out.mkdir()
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(i), str(images),
                             str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  errs = []
  try:
    for p in procs:
      _, err = p.communicate(timeout=240)
      errs.append(err)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errs)

  model = models.load("inceptionv1", random_init=0)
  one = run(model, f"folder:{images}", [LAYER], k=6, batch_size=8, micro_batch=2, resize=72,
            crop=64, progress=False, workers=1)
  two = SweepResult.load(out / "sweep")
  assert two.info["processes"] == 2 and one.info["processes"] == 1
  for name in ("top_idx", "top_val", "bot_idx", "bot_val"):
    np.testing.assert_array_equal(getattr(two, name)[LAYER], getattr(one, name)[LAYER], name)
  assert len(set(one.top_idx[LAYER][:, 0].tolist())) > 1  # channels rank different images first

  ref = [occlusion.occlusion_maps(model, q, LAYER, [3, 17], size=24, stride=20) for q in queries]
  np.testing.assert_array_equal(np.load(out / "maps.npy"), np.stack([r.maps for r in ref]))
  np.testing.assert_array_equal(np.load(out / "base.npy"), np.stack([r.base for r in ref]))
  assert np.ptp(ref[0].maps[..., 0]) > 0  # the occluder changes the activation
