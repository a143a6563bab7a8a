"""The machine interpretability score (MIS), all units in one vmapped program.

Definition (successors_spec §5.2; `klindtlab/machine-interpretability` `MIS.py`,
`klindtlab/MachInterp` `fast_mis/mis.py`). For one unit and one task, draw K + 1 images without
replacement from the unit's top pool and K + 1 from its bottom pool, and order each draw by
activation: the K most extreme are the explanations E+ (E-), the remaining, least extreme one is
the query q+ (q-). With s(q, E) = mean over e in E of cos(q, e),

    Delta = [s(q+, E+) - s(q+, E-)] - [s(q-, E+) - s(q-, E-)],

and over the N tasks MIS = mean sigma(alpha * Delta); alpha = None gives the fraction of tasks
with Delta > 0 (the machine's accuracy on the 2-AFC task, no human data needed).

Implementation. Embeddings are L2-normalised once, so cos(q, e) = q . e. Two exact programs:
"gram" (default while the pools' distinct images number at most `GRAM_MAX`): the cosine matrix
G of those images is one matmul, and each s(q, E) is a mean of K entries of G; "gather": by
linearity s(q, E) = q . mean(E) and Delta = (q+ - q-) . (mean(E+) - mean(E-)), gathering the
embeddings (memory linear in the image count, for very large image sets). Pools are the
sweep's tables (most extreme first), so ordering a draw by activation is sorting the drawn pool
positions. Randomness: the key of unit (layer, channel) is
`fold_in(fold_in(key, crc32(layer)), channel)`, side s in {0 top, 1 bottom} folds in s, and a
draw is a partial Fisher-Yates shuffle from K + 1 random integers per task (`draw_positions`).
A unit's tasks therefore depend only on the key and the unit, not on which other units are
scored with it.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_K = 9
DEFAULT_N = 20
DEFAULT_QUANTILE = 0.1
DEFAULT_ALPHA = None
"""alpha = None: MIS is the fraction of tasks solved, as `run_psychophysics` and the README
example of `klindtlab/MachInterp` use it; it needs no human data."""
CODE_ALPHA = 0.16
"""The default of the reference code's `calc_MIS_set(alpha=0.16)`; the paper fits alpha to IMI's
human data, and whether 0.16 is that fit is unverified. On cosine similarities |Delta| <= 4, so
sigma(0.16 * Delta) stays within 0.35..0.65 and scores bunch near 0.5."""


def layer_key(layer: str) -> int:
  """A stable 31-bit integer of a layer name (crc32), folded into the unit's key."""
  return zlib.crc32(layer.encode("utf-8")) & 0x7FFFFFFF


def unit_keys(key: jax.Array, layers: Sequence[str], channels: Sequence[int]) -> jax.Array:
  """Per-unit PRNG keys: fold_in(fold_in(key, crc32(layer)), channel)."""
  lk = jnp.asarray([layer_key(name) for name in layers], jnp.uint32)
  ch = jnp.asarray(np.asarray(channels), jnp.uint32)
  return jax.vmap(lambda a, b: jax.random.fold_in(jax.random.fold_in(key, a), b))(lk, ch)


def draw_positions(unit_key: jax.Array, pool_size: int, k: int, n_tasks: int) -> jax.Array:
  """Pool positions of one unit's tasks: (2, N, K+1) int32 for (top, bottom), each row sorted.

  Row [s, t] holds K + 1 distinct positions in 0..P-1 (0 = most extreme), ascending, so
  [s, t, :K] are the explanations and [s, t, K] the (least extreme) query. Each row is the first
  K + 1 steps of a Fisher-Yates shuffle of 0..P-1 (step j swaps position j with one drawn
  uniformly from j..P-1, `randint(fold_in(unit_key, side), (N, K+1))`): a uniformly random
  subset, from K + 1 random integers per task.
  """
  if k + 1 > pool_size:
    raise ValueError(f"pools of {pool_size} images cannot give K + 1 = {k + 1} distinct images")
  steps = jnp.arange(k + 1, dtype=jnp.int32)

  def side(s):
    r = jax.random.randint(jax.random.fold_in(unit_key, s), (n_tasks, k + 1), steps, pool_size,
                           dtype=jnp.int32)
    perm = jnp.broadcast_to(jnp.arange(pool_size, dtype=jnp.int32), (n_tasks, pool_size))
    rows = jnp.arange(n_tasks)
    for j in range(k + 1):
      a, b = perm[:, j], perm[rows, r[:, j]]
      perm = perm.at[rows, r[:, j]].set(a).at[:, j].set(b)
    # Sorting the positions orders the draw by activation (the pools are sorted).
    return jnp.sort(perm[:, :k + 1], axis=-1)
  return jnp.stack([side(0), side(1)])


def normalize(embeddings) -> np.ndarray:
  """Rows scaled to unit L2 norm (float32); ValueError for zero or non-finite rows."""
  e = np.asarray(embeddings, np.float64)
  if e.ndim != 2:
    raise ValueError(f"embeddings must be (n_images, dim), got shape {e.shape}")
  if not np.isfinite(e).all():
    bad = np.flatnonzero(~np.isfinite(e).all(axis=1))
    raise ValueError(f"{bad.size} embeddings have NaN/Inf values (image ids {bad[:5].tolist()})")
  norm = np.linalg.norm(e, axis=1)
  if (norm == 0).any():
    bad = np.flatnonzero(norm == 0)
    raise ValueError(f"{bad.size} embeddings are all zero, so cosine similarity is undefined "
                     f"(image ids {bad[:5].tolist()})")
  return (e / norm[:, None]).astype(np.float32)


GRAM_MAX = 8192
"""Largest number of distinct pool images for the Gram program (its matrix: GRAM_MAX^2 floats)."""

_PROGRAMS: dict = {}


def _program(k: int, n_tasks: int, pool: int, chunk: int, method: str):
  """The jitted deltas program for static (K, N, P, chunk, method)."""
  key = (k, n_tasks, pool, chunk, method)
  if key in _PROGRAMS:
    return _PROGRAMS[key]

  def gather_unit(emb, top, bottom, ukey):
    pos = draw_positions(ukey, pool, k, n_tasks)
    ids_t = top[pos[0]]      # (N, K+1) image ids
    ids_b = bottom[pos[1]]
    e_plus = emb[ids_t[:, :k]].mean(axis=1)
    e_minus = emb[ids_b[:, :k]].mean(axis=1)
    q_plus, q_minus = emb[ids_t[:, k]], emb[ids_b[:, k]]
    return jnp.sum((q_plus - q_minus) * (e_plus - e_minus), axis=-1)

  def gram_unit(g, top, bottom, ukey):
    pos = draw_positions(ukey, pool, k, n_tasks)
    ids_t, ids_b = top[pos[0]], bottom[pos[1]]
    qp, qm = ids_t[:, k:], ids_b[:, k:]          # (N, 1)
    ep, em = ids_t[:, :k], ids_b[:, :k]          # (N, K)

    def s(q, e):
      return g[q, e].mean(axis=-1)
    return (s(qp, ep) - s(qp, em)) - (s(qm, ep) - s(qm, em))

  unit = gram_unit if method == "gram" else gather_unit

  def run(emb, top, bottom, ukeys):
    if method == "gram":
      emb = jnp.matmul(emb, emb.T, precision=jax.lax.Precision.HIGHEST)
    return jax.lax.map(lambda a: unit(emb, *a), (top, bottom, ukeys), batch_size=chunk)

  fn = jax.jit(run)
  _PROGRAMS[key] = fn
  return fn


def task_deltas(embeddings, top, bottom, keys, *, k: int = DEFAULT_K, n_tasks: int = DEFAULT_N,
                chunk: int = 256, normalized: bool = False, method: str = "auto") -> np.ndarray:
  """Delta of every task of every unit: (U, N) float32, in one compiled program.

  Args:
    embeddings: (n_images, D) one embedding per image id (any scale; normalised here).
    top, bottom: (U, P) pools of image ids, most extreme first (`Pools.top`, `Pools.bottom`).
    keys: (U,) unit PRNG keys (`unit_keys`).
    k, n_tasks: explanations per side and tasks per unit.
    chunk: units vmapped together inside the program (gather: chunk * N * 2(K+1) * D floats).
    normalized: the rows already have unit norm (skip the check and the normalisation).
    method: "gram", "gather" or "auto" (gram when the pools hold <= GRAM_MAX distinct images).
  """
  emb = np.asarray(embeddings, np.float32) if normalized else normalize(embeddings)
  top = np.asarray(top, np.int32)
  bottom = np.asarray(bottom, np.int32)
  if top.shape != bottom.shape or top.ndim != 2:
    raise ValueError(f"top {top.shape} and bottom {bottom.shape} pools must be equal (U, P)")
  if top.size and (max(top.max(), bottom.max()) >= emb.shape[0]
                   or min(top.min(), bottom.min()) < 0):
    raise ValueError(f"pools refer to image ids outside the {emb.shape[0]} embeddings")
  if method not in ("auto", "gram", "gather"):
    raise ValueError(f"method must be auto, gram or gather, got {method!r}")
  u, p = top.shape
  if u == 0:
    return np.zeros((0, n_tasks), np.float32)
  chunk = max(1, min(int(chunk), u))
  used, inverse = np.unique(np.concatenate([top.ravel(), bottom.ravel()]), return_inverse=True)
  if method == "auto":
    method = "gram" if used.size <= GRAM_MAX else "gather"
  if method == "gram":
    # Only the images the pools use, renumbered 0..m-1.
    emb = emb[used]
    top = inverse[:top.size].reshape(top.shape).astype(np.int32)
    bottom = inverse[top.size:].reshape(bottom.shape).astype(np.int32)
  fn = _program(int(k), int(n_tasks), int(p), chunk, method)
  return np.asarray(fn(jnp.asarray(emb), jnp.asarray(top), jnp.asarray(bottom), keys))


def mis_from_deltas(deltas, alpha: float | None = DEFAULT_ALPHA) -> np.ndarray:
  """MIS per unit from (U, N) deltas: mean sigma(alpha * Delta), or mean(Delta > 0) for None."""
  d = np.asarray(deltas, np.float64)
  if alpha is None:
    return (d > 0).mean(axis=-1)
  return (0.5 * (1.0 + np.tanh(0.5 * float(alpha) * d))).mean(axis=-1)  # stable sigmoid


def sem_of_accuracy(deltas) -> np.ndarray:
  """Standard error of the alpha=None accuracy over a unit's N tasks (binomial, ddof=1)."""
  c = (np.asarray(deltas) > 0).astype(np.float64)
  n = c.shape[-1]
  return c.std(axis=-1, ddof=1) / np.sqrt(n) if n > 1 else np.full(c.shape[:-1], np.nan)


def score_pools(pools, embeddings, *, seed: int = 0, k: int = DEFAULT_K,
                n_tasks: int = DEFAULT_N, alpha: float | None = DEFAULT_ALPHA,
                chunk: int = 256, method: str = "auto") -> dict[str, np.ndarray]:
  """MIS of every unit of a `Pools` with one embedding per image id.

  Returns a dict of (U,) arrays: `mis` (mean sigma(alpha * Delta); equal to `accuracy` when
  alpha is None), `accuracy` (fraction of tasks with Delta > 0, the alpha = None score),
  `accuracy_sem`, `constant` (flagged units get NaN scores), and `deltas` (U, N).
  """
  if len(pools) and pools.size < k + 1:
    raise ValueError(f"pools of {pools.size} images are too small for K + 1 = {k + 1}")
  emb = np.array(getattr(embeddings, "array", embeddings), np.float64)
  if emb.ndim != 2:
    raise ValueError(f"embeddings must be (n_images, dim), got shape {emb.shape}")
  needed = np.unique(np.concatenate([pools.top.ravel(), pools.bottom.ravel()]))
  if needed.size and needed.max() >= emb.shape[0]:
    raise ValueError(f"pools refer to image id {needed.max()}, but there are only "
                     f"{emb.shape[0]} embeddings")
  unused = np.ones(emb.shape[0], bool)
  unused[needed] = False
  emb[unused] = 1.0  # rows no task reads (may be NaN for images that were not embedded)
  keys = unit_keys(jax.random.PRNGKey(int(seed)), pools.layers, pools.channels)
  deltas = task_deltas(normalize(emb), pools.top, pools.bottom, keys, k=k, n_tasks=n_tasks,
                       chunk=chunk, normalized=True, method=method)
  deltas = np.where(pools.constant[:, None], np.nan, deltas).astype(np.float32)
  acc = mis_from_deltas(deltas, None)
  mis = acc if alpha is None else mis_from_deltas(deltas, alpha)
  acc = np.where(pools.constant, np.nan, acc)
  mis = np.where(pools.constant, np.nan, mis)
  return dict(mis=mis, accuracy=acc, accuracy_sem=sem_of_accuracy(deltas),
              constant=pools.constant.copy(), deltas=deltas)
