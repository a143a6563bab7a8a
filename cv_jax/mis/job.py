"""`run_mis`: sweep (or a saved sweep) -> pools -> embeddings -> MIS of every unit -> files.

The job behind `cv-jax mis`. Stages and their timings are reported separately (sweep,
embedding, scoring, report) so the embedding cost is visible on its own.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable, Sequence

import numpy as np

from cv_jax.mis import embeddings as emb_lib
from cv_jax.mis import pools as pools_lib
from cv_jax.mis import score as score_lib


@dataclasses.dataclass
class MISResult:
  """Scores of every unit, with everything needed to write and explain them."""

  pools: pools_lib.Pools
  scores: dict[str, np.ndarray]
  similarity: emb_lib.Embeddings
  config: dict[str, Any]
  model: str
  source: str
  paths: list[str]
  branches: list[str | None]
  timings: dict[str, float]
  human: dict[str, Any] | None = None

  @property
  def units(self) -> list[str]:
    """"layer:channel" of every scored unit."""
    return self.pools.names()

  def rows(self) -> list[dict[str, Any]]:
    """One plain dict per unit (the CSV / JSON rows)."""
    s, p = self.scores, self.pools
    out = []
    def f(x):
      return None if not np.isfinite(x) else float(x)
    for i, name in enumerate(self.units):
      out.append(dict(unit=name, layer=p.layers[i], channel=int(p.channels[i]),
                      branch=self.branches[i], mis=f(s["mis"][i]), accuracy=f(s["accuracy"][i]),
                      accuracy_sem=f(s["accuracy_sem"][i]), constant=bool(s["constant"][i])))
    return out


def _branches(model, layers: Sequence[str], channels: np.ndarray) -> list[str | None]:
  from cv_jax import models
  cache: dict[tuple[str, int], str | None] = {}
  out = []
  for layer, c in zip(layers, channels):
    key = (layer, int(c))
    if key not in cache:
      try:
        cache[key] = models.Unit(layer, int(c)).branch_str(model)
      except (ValueError, KeyError):
        cache[key] = None
    out.append(cache[key])
  return out


def run_mis(model, source, *, layers: Sequence[str] | None = None, sweep_dir=None,
            workdir=None, embedding: str = "network", embedding_model=None,
            embedding_layer: str = "avgpool0", dreamsim_cache: str | None = None,
            k: int = score_lib.DEFAULT_K, n_tasks: int = score_lib.DEFAULT_N,
            quantile: float = score_lib.DEFAULT_QUANTILE,
            alpha: float | None = score_lib.DEFAULT_ALPHA, seed: int = 0,
            batch_size: int = 32, chunk: int = 64, progress: bool = True,
            log: Callable[[str], None] = print) -> MISResult:
  """Score every channel of `layers` with MIS.

  Args:
    model: the cv_jax network whose units are scored.
    source: the image source (a Source or URI) of the sweep.
    layers: layers to score (default: the nine mixedXX_pre_relu).
    sweep_dir: a saved sweep (`SweepResult.save`) of `model` over `source` to reuse; without
      it a sweep with k = ceil(q * n) runs into `workdir/sweep` (resumable).
    workdir: where a new sweep goes (required without `sweep_dir`).
    embedding: "network" (the built-in embedding), "dreamsim", or a path to an embeddings
      file (.npz / .npy, see `cv_jax.mis.embeddings`).
    embedding_model: the network for "network" (default: `model`).
    embedding_layer: its layer (default avgpool0, GoogLeNet's pooled penultimate features).
    k, n_tasks, quantile, alpha, seed: the MIS settings (K, N, q, alpha or None, PRNG seed).
    batch_size: images per forward pass (sweep and embedding).
    chunk: units vmapped together in the scoring program.
  """
  from cv_jax import sweep as sweep_lib
  from cv_jax.data import open_source

  if k < 1 or n_tasks < 1:
    raise ValueError(f"K and N must be positive, got K={k}, N={n_tasks}")
  if alpha is not None and not np.isfinite(alpha):
    raise ValueError(f"alpha must be a finite number or None, got {alpha}")
  timings: dict[str, float] = {}
  if isinstance(source, (str, pathlib.Path)):
    source = open_source(str(source))
  layers = sweep_lib.resolve_layers(model, layers)
  # Everything that can be checked before the long stages is checked first.
  p = pools_lib.pool_size(len(source), quantile)
  if p < k + 1:
    raise ValueError(f"q = {quantile} of {len(source)} images gives pools of {p} images, but MIS "
                     f"needs K + 1 = {k + 1}; use more images, a larger q or a smaller K")
  emb_lib.check_embedding(embedding, dreamsim_cache)

  t0 = time.perf_counter()
  if sweep_dir is not None:
    res = sweep_lib.SweepResult.load(sweep_dir)
    swept_model = (res.info or {}).get("model")
    if swept_model and swept_model != model.name:
      raise ValueError(f"the sweep in {sweep_dir} was made with {swept_model}, not {model.name}")
    if list(res.paths) != list(source.paths):
      raise ValueError(f"the sweep in {sweep_dir} ranked other images than {source.uri} "
                       f"({len(res.paths)} vs {len(source)} images); pass the sweep's source")
    pools = pools_lib.pools_from_sweep(res, layers, quantile, min_size=k + 1)
    log(f"[sweep] reusing {sweep_dir} ({len(res.paths)} images, k = {res.k})")
  else:
    if workdir is None:
      raise ValueError("no sweep to reuse and no workdir for a new one")
    import math

    import jax
    n_dev = jax.device_count()
    if batch_size < n_dev or batch_size % n_dev:
      raise ValueError(f"batch_size {batch_size} must be a positive multiple of the {n_dev} "
                       "devices; pass --batch_size accordingly")
    micro = math.gcd(batch_size // n_dev, 8)
    log(f"[sweep] {len(layers)} layers over {len(source)} images, k = {p} (compiling first)")
    res = sweep_lib.run(model, source, layers, k=p, batch_size=batch_size, micro_batch=micro,
                        workdir=pathlib.Path(workdir) / "sweep", progress=progress)
    pools = pools_lib.pools_from_sweep(res, layers, quantile, min_size=k + 1)
  timings["sweep_s"] = time.perf_counter() - t0
  needed = np.unique(np.concatenate([pools.top.ravel(), pools.bottom.ravel()]))

  t0 = time.perf_counter()
  if embedding == "network":
    emodel = embedding_model if embedding_model is not None else model
    emb = emb_lib.network_embeddings(emodel, source, needed, layer=embedding_layer,
                                     batch_size=batch_size, progress=progress, log=log)
  elif embedding == "dreamsim":
    emb = emb_lib.dreamsim_embeddings(source, needed, cache_dir=dreamsim_cache,
                                      batch_size=batch_size, progress=progress)
  else:
    emb = emb_lib.load_embeddings_file(embedding, res.paths, needed,
                                       root=getattr(source, "root", None))
  timings["embedding_s"] = time.perf_counter() - t0
  log(f"[embedding] {emb.note}: {needed.size} images, {timings['embedding_s']:.1f} s")

  t0 = time.perf_counter()
  log(f"[score] {len(pools)} units x {n_tasks} tasks (K = {k}, pools of {pools.size}) in one "
      "program (compiling first)")
  scores = score_lib.score_pools(pools, emb.array, seed=seed, k=k, n_tasks=n_tasks,
                                 alpha=alpha, chunk=chunk)
  timings["score_s"] = time.perf_counter() - t0
  timings["units_per_s"] = len(pools) / timings["score_s"] if timings["score_s"] > 0 else None
  log(f"[score] {len(pools)} units in {timings['score_s']:.2f} s "
      f"({int(pools.constant.sum())} constant units flagged)")
  config = dict(k=int(k), n_tasks=int(n_tasks), quantile=float(quantile),
                alpha=None if alpha is None else float(alpha), seed=int(seed),
                pool_size=pools.size, n_images=pools.n_images, layers=list(layers),
                embedding=embedding if embedding in ("network", "dreamsim") else "file")
  return MISResult(pools=pools, scores=scores, similarity=emb, config=config, model=model.name,
                   source=source.uri, paths=list(res.paths),
                   branches=_branches(model, pools.layers, pools.channels), timings=timings)
