"""The 2-AFC natural-exemplar task of Borowski et al. (ICLR 2021) and IMI (NeurIPS 2023).

A trial shows a unit's 9 minimally and 9 maximally activating reference images (natural
exemplars or min / max feature visualizations) and two natural query images, one from each end of
the unit's ranking; the participant picks the query that belongs with the maximal references.

Image selection (successors_spec §4.2, paper_spec §7), per unit and side (max = the most
activating end of the ranking, min = the least), from the sweep's ranking of n images with B
image sets (= bin size):

* references: the n_references * B most extreme images in n_references rank bins of B (bin 0 =
  ranks 1..B, the most extreme), each bin permuted, image set j taking the j-th image of every
  bin, as in both papers;
* queries, `query_percentile = p` (IMI; default 0.1): the window of B images at 0-based ranks
  [round(p * n), round(p * n) + B) from that end (IMI's ranks 5,000..5,019 of 50,000, the
  10th / 90th percentile), permuted, image set j taking the j-th; the window must lie beyond
  the reference bins (IMI asserts the same);
* queries, `query_percentile = None` (ICLR 2021, the predecessor): the most extreme bin of 10
  gives the query and the next 9 bins the references, with the paper's own seeds and NumPy
  calls (`cv_jax.sweep.select_exemplars`: channel + 1 for max, channel for min).

Catch trials (IMI): the query of each side is that side's most extreme reference, which is
also shown among the references, so the answer is visible.

Randomness of the percentile mode is explicit: `np.random.default_rng([seed, channel, side])`,
one permutation per bin, bins in order (side 0 = max, 1 = min). Imports no JAX (the study
server uses `shown_2afc`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from cv_jax.experiment.trials import assemble_tasks, task_orders

SIDES = ("max", "min")
QUERY_PERCENTILE = 0.1


def required_depth(n_images: int, n_references: int = 9, bin_size: int = 20,
                   query_percentile: float | None = QUERY_PERCENTILE) -> int:
  """Table depth k the sweep needs for this selection."""
  if query_percentile is None:
    return (n_references + 1) * bin_size
  return query_start(n_images, query_percentile) + bin_size


def query_start(n_images: int, query_percentile: float) -> int:
  """0-based rank (from the extreme) where the query window starts: round(p * n)."""
  if not 0.0 < query_percentile < 0.5:
    raise ValueError(f"query_percentile must be in (0, 0.5), got {query_percentile}")
  return int(round(query_percentile * n_images))


def select_2afc(top_ids: Sequence[int], bot_ids: Sequence[int], n_images: int, *, channel: int,
                n_references: int = 9, bin_size: int = 20,
                query_percentile: float | None = QUERY_PERCENTILE, seed: int = 0
                ) -> dict[str, dict[str, np.ndarray]]:
  """References and queries of one unit for every image set, for both sides.

  Args:
    top_ids, bot_ids: the unit's ranked image ids, most extreme first (a row of
      `SweepResult.top_idx` / `bot_idx`), deep enough for `required_depth`.
    n_images: images the sweep ranked (for the percentile window).
    channel: the unit's channel (seeds).
    n_references: references per side (9 in both papers).
    bin_size: B = number of image sets (20 in both papers).
    query_percentile: p for IMI's windows, or None for the predecessor's extreme-bin queries.
    seed: seed of the percentile mode's permutations.

  Returns:
    {"max": ..., "min": ...}, each with `query` (B,) ids, `query_rank` (B,) 1-based ranks from
    that side's extreme, `references` (B, n_references) ids with column 0 from the most extreme
    bin, and `reference_ranks` (B, n_references).
  """
  out = {}
  need = required_depth(n_images, n_references, bin_size, query_percentile)
  for s, (side, ranked) in enumerate(zip(SIDES, (top_ids, bot_ids))):
    ranked = np.asarray(ranked).reshape(-1)
    if ranked.size < need:
      raise ValueError(f"the sweep kept {ranked.size} images per side, but this selection "
                       f"(n_references={n_references}, bin_size={bin_size}, query_percentile="
                       f"{query_percentile}, {n_images} images) needs {need}; sweep with "
                       f"k >= {need}")
    if query_percentile is None:
      # Imported here: cv_jax.sweep imports JAX, and the study server imports this module.
      from cv_jax.sweep.exemplars import select_exemplars
      ex = select_exemplars(ranked, n_bins=n_references + 1, bin_size=bin_size,
                            seed=channel + 1 if side == "max" else channel, kind=side,
                            permute_query_bin=True)
      refs, ranks = ex["references"], ex["ranks"]
      qcol = n_references if side == "max" else 0
      rref = np.delete(ranks, qcol, axis=1)
      order = np.argsort(rref[0])  # most extreme bin first (smallest rank)
      out[side] = dict(query=ex["query"], query_rank=ranks[:, qcol].copy(),
                       references=refs[:, order], reference_ranks=rref[:, order])
      continue
    start = query_start(n_images, query_percentile)
    if start < n_references * bin_size:
      raise ValueError(f"the query window (ranks from {start + 1}) overlaps the references "
                       f"(ranks 1..{n_references * bin_size}); with {n_images} images use a "
                       f"larger query_percentile or fewer/smaller reference bins")
    rng = np.random.default_rng([int(seed), int(channel), s])
    cols, rank_cols = [], []
    for b in range(n_references):
      perm = rng.permutation(bin_size) + b * bin_size
      cols.append(ranked[perm])
      rank_cols.append(perm + 1)
    qperm = rng.permutation(bin_size) + start
    out[side] = dict(query=ranked[qperm], query_rank=qperm + 1,
                     references=np.stack(cols, axis=1), reference_ranks=np.stack(rank_cols, 1))
  return out


def make_tasks_2afc(trials: Sequence[Mapping[str, Any]], conditions: Sequence[str], *,
                    n_tasks: int, sets: Sequence[int], seed: int = 1,
                    n_references: int = 9) -> list[dict]:
  """Tasks per condition: every main unit once (at the task's image set) + the catch trials.

  Task k (1-based) uses image set sets[(k-1) mod len(sets)]; trial order from
  `default_rng([seed, 0, k])` (the same in every condition); per entry the reference display
  order of each side keeps the most extreme reference first and shuffles the others (IMI's
  timeline), from `default_rng([seed, 1, k, i, condition index, side])`, and the max query's
  position (left / right of the two queries) from `default_rng([seed, 2, k, i])`.
  """
  if n_tasks < 1 or not sets:
    raise ValueError(f"need n_tasks >= 1 and at least one image set, got {n_tasks}, {sets}")
  practice = [t["id"] for t in trials if t["role"] == "practice"]
  orders = task_orders(trials, sets, n_tasks=n_tasks, seed=seed)

  def ref_order(ci, c, k, i):
    order = {}
    for s, side in enumerate(SIDES):
      rng = np.random.default_rng([seed, 1, k, i, ci, s])
      order[side] = [0] + [int(1 + j) for j in rng.permutation(n_references - 1)]
    return order
  return assemble_tasks(conditions, orders, practice, seed=seed, reference_order=ref_order)


def shown_2afc(doc: Mapping[str, Any], task: Mapping[str, Any],
               entry: Mapping[str, Any]) -> dict[str, Any]:
  """What a participant sees for one 2-AFC task entry (a consumer's reference implementation).

  Returns {"min_references", "max_references" (display order), "left", "right" (the two
  queries), "correct": "left" | "right"}; the min references go on the left of the screen and
  the max references on the right (IMI's layout).
  """
  trial = next(t for t in doc["trials"] if t["id"] == entry["trial"])
  refs = trial["references"][task["condition"]]
  order = entry["reference_order"]
  mx, mn = trial["queries"]["max"], trial["queries"]["min"]
  left, right = (mx, mn) if entry["max_side"] == "left" else (mn, mx)
  return {"min_references": [refs["min"][i] for i in order["min"]],
          "max_references": [refs["max"][i] for i in order["max"]],
          "left": left, "right": right, "correct": entry["max_side"]}
