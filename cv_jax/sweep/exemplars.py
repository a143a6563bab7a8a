"""Choosing query and natural reference images from a unit's ranking, as
the paper's code and its ICLR 2021 predecessor's do.

NeurIPS 2021 (`1_save_natural_reference_and_default_images.ipynb`): the 200 most activating
images, in ascending order of activation, form 10 rank bins of 20 (bin 0 = ranks 200..181, bin 9
= ranks 20..1). With `np.random.seed(feature_map + 1)` each of bins 0..8 is permuted in turn
(one `np.random.permutation` per bin); bin 9 stays in order. Image set b (b = 0..19) takes
position `b + 20 k` of that list for k = 0..9: k = 0..8 are its 9 natural references
(`reference_max_k.png`), k = 9 is its query (the (20 - b)-th most activating image).

ICLR 2021 (`save_natural_stimuli.py`): the same with every bin permuted, for the top 200
(seed feature_map + 1, `max_k`) and for the bottom 200 in ascending order (seed feature_map,
`min_k`; the query there is `min_0`, from the 20 least activating images).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _bin_order(n_bins: int, bin_size: int, seed: int, keep_last: bool) -> np.ndarray:
  """Positions 0..n_bins*bin_size-1, permuted within each bin, one permutation per bin in turn."""
  rng_state = np.random.get_state()
  try:
    np.random.seed(seed)
    out = np.empty(n_bins * bin_size, np.int64)
    base = np.arange(bin_size)
    for b in range(n_bins):
      if keep_last and b == n_bins - 1:
        out[b * bin_size:(b + 1) * bin_size] = base + b * bin_size
      else:
        out[b * bin_size:(b + 1) * bin_size] = np.random.permutation(base + b * bin_size)
    return out
  finally:
    np.random.set_state(rng_state)  # do not disturb the caller's global numpy RNG


def select_exemplars(ranked_ids: Sequence[int] | np.ndarray, n_bins: int = 10, bin_size: int = 20,
                     seed: int | None = None, *, kind: str = "max", permute_query_bin: bool = False,
                     total_bins: int | None = None) -> dict[str, np.ndarray]:
  """Split a unit's ranked images into rank bins and deal them out into image sets.

  Args:
    ranked_ids: image ids, most extreme first: a row of `SweepResult.top_idx` (most activating
      first) for kind="max", or of `SweepResult.bot_idx` (least activating first) for
      kind="min". Needs at least `n_bins * bin_size` entries; only those are used.
    n_bins: rank bins used; each image set gets one image per bin (query + n_bins-1 references).
    bin_size: images per bin = number of image sets.
    seed: (required) numpy seed of the within-bin permutations; the paper uses `feature_map + 1` for
      max (feature_map = the unit's channel in its layer) and `feature_map` for min (ICLR).
    kind: "max": bins ordered from weak to strong, the strongest bin gives the query (NeurIPS,
      `reference_max_k`). "min": bins ordered from the least activating up (ICLR `min_k`), the
      first bin (most extreme) gives the query.
    permute_query_bin: False (NeurIPS): the query bin keeps its rank order, so set b's query is
      the (bin_size - b)-th most activating image; True (ICLR): it is permuted like the others.
    total_bins: generate the permutations for this many bins and keep the last `n_bins` (the
      NeurIPS "mixed" condition: total_bins=10, n_bins=6); kind="max" only. Default n_bins.

  Returns:
    dict with `query` (bin_size,) ids, `references` (bin_size, n_bins-1) ids (column k =
    reference k = `reference_max_k` / `min_{k+1}`), `bins` (bin_size, n_bins) ids in bin order
    (column k = file `*_k.png`), and `ranks` (bin_size, n_bins): 1-based rank of each chosen
    image in `ranked_ids` (1 = most extreme).
  """
  if seed is None:
    raise ValueError("select_exemplars needs seed=; the paper uses feature_map + 1 for the most "
                     "activating images (feature_map = the unit's channel index in its layer)")
  if kind not in ("max", "min"):
    raise ValueError(f"kind must be 'max' or 'min', got {kind!r}")
  if n_bins < 1 or bin_size < 1:
    raise ValueError(f"n_bins and bin_size must be positive, got {n_bins}, {bin_size}")
  total = n_bins if total_bins is None else total_bins
  if total < n_bins:
    raise ValueError(f"total_bins ({total}) must be >= n_bins ({n_bins})")
  if total != n_bins and kind != "max":
    raise ValueError("total_bins != n_bins is only defined for kind='max' (the mixed condition)")
  ranked = np.asarray(ranked_ids).reshape(-1)
  need = n_bins * bin_size
  if ranked.size < need:
    raise ValueError(f"need at least n_bins*bin_size = {need} ranked images, got {ranked.size} "
                     f"(sweep with k >= {need}, or use fewer/smaller bins)")
  if kind == "max":
    # Ascending activation, as the notebook's df sorted ascending and cut to its last rows.
    ordered = ranked[:need][::-1]
    rank_of_pos = need - np.arange(need)
    order = _bin_order(total, bin_size, seed, keep_last=not permute_query_bin)
    order = order[-need:] - (total - n_bins) * bin_size
    query_bin = n_bins - 1
  else:
    ordered = ranked[:need]  # ascending activation: least activating first
    rank_of_pos = np.arange(1, need + 1)
    # ICLR permutes every bin; permute_query_bin=False keeps bin 0 (the query bin) in order.
    order = _bin_order(n_bins, bin_size, seed, keep_last=False)
    if not permute_query_bin:
      order[:bin_size] = np.arange(bin_size)
    query_bin = 0
  picked = order.reshape(n_bins, bin_size).T  # [b, k] = order[b + bin_size * k]
  bins = ordered[picked]
  refs = np.delete(bins, query_bin, axis=1)
  return dict(query=bins[:, query_bin].copy(), references=refs, bins=bins,
              ranks=rank_of_pos[picked])
