"""MIS throughput: units scored per second for every mixed-layer channel of BVLC GoogLeNet.

    python benchmarks/mis.py                 # 1000 sample images, all nine mixed layers
    python benchmarks/mis.py --quick         # 200 images, mixed3a + mixed5b

Stages are timed separately: the sweep (top/bottom tables), the embedding (GoogLeNet avgpool0
features of the pool images: the built-in embedding, not the paper's DreamSim), and the scoring.
The peer for the scoring is a vectorised PyTorch implementation of the same tasks (the same
drawn images, passed from JAX), computing each s(q, E) from explicit pairwise cosine similarities
as the reference code does (`F.cosine_similarity`, mean over the explanations), in chunks of
units. Both sides are checked to give the same deltas first.

`run(quick) -> rows` returns the table rows for benchmarks/run_all.py: dicts with `benchmark`,
`what`, `cv_jax`, `peer`, `ratio`, `unit`.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", REPO.parent / "shared"))
WEIGHTS = SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz"
IMAGES = SHARED / "data" / "imagenet_samples"
LAYERS = tuple(f"mixed{b}_pre_relu" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))


def _uptime() -> str:
  try:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  except OSError:  # pragma: no cover
    return "uptime unavailable"


def torch_deltas(emb, top, bottom, pos, k: int, chunk: int = 256):
  """The peer: Delta per (unit, task) from pairwise cosine similarities in PyTorch."""
  import torch
  import torch.nn.functional as F
  e = torch.from_numpy(np.asarray(emb, np.float32))
  top, bottom = torch.from_numpy(top.astype(np.int64)), torch.from_numpy(bottom.astype(np.int64))
  pos = torch.from_numpy(np.asarray(pos, np.int64))  # (U, 2, N, K+1)
  out = []
  with torch.inference_mode():
    for s in range(0, top.shape[0], chunk):
      t, b, p = top[s:s + chunk], bottom[s:s + chunk], pos[s:s + chunk]
      ids_t = torch.gather(t[:, None, :].expand(-1, p.shape[2], -1), 2, p[:, 0])
      ids_b = torch.gather(b[:, None, :].expand(-1, p.shape[2], -1), 2, p[:, 1])
      ep, qp = e[ids_t[..., :k]], e[ids_t[..., k]]
      em, qm = e[ids_b[..., :k]], e[ids_b[..., k]]

      def s_(q, ex):
        return F.cosine_similarity(q[:, :, None, :], ex, dim=-1).mean(-1)
      out.append((s_(qp, ep) - s_(qp, em)) - (s_(qm, ep) - s_(qm, em)))
  return torch.cat(out).numpy()


def run(quick: bool = False, log=print) -> list[dict]:
  """Time sweep, embedding and scoring; returns the table rows."""
  import jax
  from cv_jax import mis, models, sweep
  from cv_jax.data import open_source

  n_images = 200 if quick else 1000
  layers = (LAYERS[0], LAYERS[-1]) if quick else LAYERS
  k, n_tasks = mis.DEFAULT_K, mis.DEFAULT_N
  src = open_source(f"folder:{IMAGES}", max_images=n_images)
  model = models.load("googlenet_bvlc", WEIGHTS)
  log(f"load before: {_uptime()}")
  log(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, cpu cores: "
      f"{os.cpu_count()}, images: {len(src)}, layers: {len(layers)}")
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    p = mis.pool_size(len(src), mis.DEFAULT_QUANTILE)
    res = sweep.run(model, src, layers, k=p, batch_size=32, workdir=tmp, progress=False)
    t_sweep = time.perf_counter() - t0
  pools = mis.pools_from_sweep(res, layers, mis.DEFAULT_QUANTILE, min_size=k + 1)
  needed = np.unique(np.concatenate([pools.top.ravel(), pools.bottom.ravel()]))
  rows.append(dict(what=f"sweep, {len(layers)} layers (incl. compile)",
                   cv_jax=len(src) / t_sweep, unit="images/s"))

  t0 = time.perf_counter()
  emb = mis.network_embeddings(model, src, needed, progress=False)
  t_emb = time.perf_counter() - t0
  rows.append(dict(what=f"embedding avgpool0, {needed.size} pool images (incl. compile)",
                   cv_jax=needed.size / t_emb, unit="images/s"))

  t0 = time.perf_counter()
  scores = mis.score_pools(pools, emb.array, seed=0, k=k, n_tasks=n_tasks)
  t_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  scores = mis.score_pools(pools, emb.array, seed=0, k=k, n_tasks=n_tasks)
  t_warm = time.perf_counter() - t0
  u = len(pools)

  # The peer on the same tasks.
  keys = mis.unit_keys(jax.random.PRNGKey(0), pools.layers, pools.channels)
  draw = jax.jit(jax.vmap(lambda kk: mis.draw_positions(kk, pools.size, k, n_tasks)))
  pos = np.asarray(draw(keys))
  e = emb.array.copy()
  e[~np.isfinite(e).all(axis=1)] = 1.0
  t0 = time.perf_counter()
  ref = torch_deltas(e, pools.top, pools.bottom, pos, k)
  t_torch = time.perf_counter() - t0
  err = float(np.abs(ref - scores["deltas"]).max())
  log(f"max |Delta_jax - Delta_torch| over {u} x {n_tasks} tasks: {err:.2e}")
  if err > 1e-4:
    raise AssertionError(f"JAX and PyTorch deltas differ by {err}")
  rows.append(dict(what=f"MIS scoring, {u} units x {n_tasks} tasks (warm)", cv_jax=u / t_warm,
                   peer=u / t_torch, ratio=t_torch / t_warm, unit="units/s"))
  rows.append(dict(what="MIS scoring, first call (incl. compile)", cv_jax=u / t_first,
                   unit="units/s"))
  log(f"load after: {_uptime()}")
  log(f"mean accuracy (alpha=None) {np.nanmean(scores['accuracy']):.3f}; sweep {t_sweep:.1f} s, "
      f"embedding {t_emb:.1f} s, scoring {t_warm:.2f} s warm / {t_first:.2f} s first, "
      f"PyTorch scoring {t_torch:.2f} s")
  for r in rows:
    r["benchmark"] = "mis"
    r.setdefault("peer", None)
    r.setdefault("ratio", None)
  return rows


def main() -> None:
  """Print the table."""
  quick = "--quick" in sys.argv[1:]
  rows = run(quick)
  print(f"{'what':<58} {'cv_jax':>10} {'PyTorch':>10} {'ratio':>7}  unit")
  for r in rows:
    peer = "" if r["peer"] is None else f"{r['peer']:10.1f}"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:6.2f}x"
    print(f"{r['what']:<58} {r['cv_jax']:10.1f} {peer:>10} {ratio:>7}  {r['unit']}")


if __name__ == "__main__":
  main()
