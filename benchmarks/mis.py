"""MIS throughput: units scored per second for every mixed-layer channel of BVLC GoogLeNet.

    python benchmarks/mis.py                 # 1000 sample images, all nine mixed layers
    python benchmarks/mis.py --quick         # 200 images, mixed3a + mixed5b
    python benchmarks/mis.py --sweep=DIR     # scoring only, on a saved sweep (random embeddings)

Stages are timed separately: the sweep (top/bottom tables), the embedding (GoogLeNet avgpool0
features of the pool images: the built-in embedding, not the paper's DreamSim), and the scoring.
Two PyTorch peers score the same tasks (the same drawn images, passed from JAX): one computes
each s(q, E) from explicit pairwise cosine similarities as the reference code does
(`F.cosine_similarity`, mean over the explanations), vectorised in chunks of units; the other
runs cv_jax's own algorithm (one cosine matrix of the pool images, then means of its entries).
All three are checked to give the same deltas.

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


def torch_deltas_gram(emb, top, bottom, pos, k: int, chunk: int = 1024):
  """The stronger peer: cv_jax's algorithm in PyTorch (cosine matrix of the pool images once,
  then each s(q, E) a mean of K of its entries)."""
  import torch
  used, inv = np.unique(np.concatenate([top.ravel(), bottom.ravel()]), return_inverse=True)
  e = torch.from_numpy(np.asarray(emb, np.float32)[used])
  e = e / e.norm(dim=1, keepdim=True)
  top_l = torch.from_numpy(inv[:top.size].reshape(top.shape).astype(np.int64))
  bot_l = torch.from_numpy(inv[top.size:].reshape(bottom.shape).astype(np.int64))
  pos = torch.from_numpy(np.asarray(pos, np.int64))
  out = []
  with torch.inference_mode():
    g = e @ e.T
    for s in range(0, top_l.shape[0], chunk):
      t, b, p = top_l[s:s + chunk], bot_l[s:s + chunk], pos[s:s + chunk]
      ids_t = torch.gather(t[:, None, :].expand(-1, p.shape[2], -1), 2, p[:, 0])
      ids_b = torch.gather(b[:, None, :].expand(-1, p.shape[2], -1), 2, p[:, 1])
      qp, qm = ids_t[..., k:], ids_b[..., k:]
      ep, em = ids_t[..., :k], ids_b[..., :k]

      def s_(q, ex):
        return g[q, ex].mean(-1)
      out.append((s_(qp, ep) - s_(qp, em)) - (s_(qm, ep) - s_(qm, em)))
  return torch.cat(out).numpy()


def _score_rows(pools, emb_array, k, n_tasks, log) -> list[dict]:
  """JAX scoring (first call and warm) against both PyTorch peers on the same tasks."""
  import jax
  from cv_jax import mis
  t0 = time.perf_counter()
  mis.score_pools(pools, emb_array, seed=0, k=k, n_tasks=n_tasks)
  t_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  scores = mis.score_pools(pools, emb_array, seed=0, k=k, n_tasks=n_tasks)
  t_warm = time.perf_counter() - t0
  u = len(pools)
  keys = mis.unit_keys(jax.random.PRNGKey(0), pools.layers, pools.channels)
  draw = jax.jit(jax.vmap(lambda kk: mis.draw_positions(kk, pools.size, k, n_tasks)))
  pos = np.asarray(draw(keys))
  e = emb_array.copy()
  e[~np.isfinite(e).all(axis=1)] = 1.0
  t0 = time.perf_counter()
  ref = torch_deltas(e, pools.top, pools.bottom, pos, k)
  t_torch = time.perf_counter() - t0
  t0 = time.perf_counter()
  ref_g = torch_deltas_gram(e, pools.top, pools.bottom, pos, k)
  t_gram = time.perf_counter() - t0
  err = max(float(np.abs(ref - scores["deltas"]).max()),
            float(np.abs(ref_g - scores["deltas"]).max()))
  log(f"max |Delta_jax - Delta_torch| over {u} x {n_tasks} tasks (both peers): {err:.2e}")
  if err > 1e-4:
    raise AssertionError(f"JAX and PyTorch deltas differ by {err}")
  log(f"scoring {t_warm:.2f} s warm / {t_first:.2f} s first; PyTorch pairwise {t_torch:.2f} s, "
      f"PyTorch Gram {t_gram:.2f} s")
  return [dict(what=f"MIS scoring, {u} units x {n_tasks} tasks (warm) vs PyTorch, reference "
                    "code's pairwise cosines", cv_jax=u / t_warm, peer=u / t_torch,
               ratio=t_torch / t_warm, unit="units/s",
               peer_what="PyTorch, pairwise F.cosine_similarity (the reference code's "
                         "computation), same tasks, draws not timed"),
          dict(what="MIS scoring (warm) vs PyTorch, the same Gram algorithm", cv_jax=u / t_warm,
               peer=u / t_gram, ratio=t_gram / t_warm, unit="units/s",
               peer_what="PyTorch, cv_jax's Gram algorithm, same tasks, draws not timed"),
          dict(what="MIS scoring, first call (incl. compile)", cv_jax=u / t_first,
               unit="units/s")], scores


def run_scoring_only(sweep_dir: str, log=print) -> list[dict]:
  """Scoring rows only, on a saved sweep and random 1,024-d embeddings (the scoring's cost does
  not depend on the embedding's values)."""
  from cv_jax import mis, sweep
  res = sweep.SweepResult.load(sweep_dir)
  pools = mis.pools_from_sweep(res, quantile=mis.DEFAULT_QUANTILE, min_size=mis.DEFAULT_K + 1)
  emb = np.random.default_rng(0).normal(size=(len(res.paths), 1024)).astype(np.float32)
  log(f"load before: {_uptime()}")
  rows, _ = _score_rows(pools, emb, mis.DEFAULT_K, mis.DEFAULT_N, log)
  log(f"load after: {_uptime()}")
  for r in rows:
    r["benchmark"] = "mis"
    r.setdefault("peer", None)
    r.setdefault("ratio", None)
    r.setdefault("command", f"python benchmarks/mis.py --sweep={sweep_dir}")
  return rows


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

  score_rows, scores = _score_rows(pools, emb.array, k, n_tasks, log)
  rows += score_rows
  log(f"load after: {_uptime()}")
  log(f"mean accuracy (alpha=None) {np.nanmean(scores['accuracy']):.3f}; sweep {t_sweep:.1f} s, "
      f"embedding {t_emb:.1f} s")
  for r in rows:
    r["benchmark"] = "mis"
    r.setdefault("peer", None)
    r.setdefault("ratio", None)
    r.setdefault("command", "python benchmarks/mis.py" + (" --quick" if quick else ""))
  return rows


def main() -> None:
  """Print the table (`--quick`; `--sweep=DIR`: the scoring rows only, on a saved sweep)."""
  args = sys.argv[1:]
  sweep_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--sweep=")), None)
  rows = run_scoring_only(sweep_dir) if sweep_dir else run("--quick" in args)
  print(f"{'what':<82} {'cv_jax':>9} {'PyTorch':>9} {'ratio':>8}  unit")
  for r in rows:
    peer = "" if r["peer"] is None else f"{r['peer']:9.1f}"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:7.2f}x"
    print(f"{r['what']:<82} {r['cv_jax']:9.1f} {peer:>9} {ratio:>8}  {r['unit']}")


if __name__ == "__main__":
  main()
