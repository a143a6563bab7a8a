"""The MIS image pools of every unit, read from a sweep's top-k / bottom-k tables.

MIS (Zimmermann, Klindt & Brendel, NeurIPS 2024; successors_spec §5.2) draws each task's
explanations and query from a unit's top and bottom q-quantile of images. Over n readable images
each pool holds the P = ceil(q * n) most (least) activating images, the pool size of
`klindtlab/MachInterp` `fast_mis/mis.py`; the sweep's exact tables, already sorted most extreme
first with ties broken by the smaller image id, are those pools when k >= P, so no full
activation matrix is needed. (The older `machine-interpretability/MIS.py` keeps the images
strictly above the torch.quantile threshold, which gives the same pools for distinct
activations except for a few (n, q) where its count is one smaller.)

Constant units (max - min < 1e-8 over the images, the paper's flag) have no meaningful pools;
they are kept in the arrays (so shapes stay static) and flagged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

CONSTANT_RANGE = 1e-8


@dataclasses.dataclass
class Pools:
  """Stacked pools of all units of all requested layers.

  Attributes:
    layers: layer name of each unit (U,).
    channels: channel of each unit (U,).
    top: (U, P) int32 image ids, most activating first.
    bottom: (U, P) int32 image ids, least activating first.
    top_val, bottom_val: (U, P) float32 activations of those images.
    constant: (U,) bool, max - min activation < 1e-8.
    n_images: readable images the sweep ranked.
    quantile: q.
  """

  layers: list[str]
  channels: np.ndarray
  top: np.ndarray
  bottom: np.ndarray
  top_val: np.ndarray
  bottom_val: np.ndarray
  constant: np.ndarray
  n_images: int
  quantile: float

  @property
  def size(self) -> int:
    """Images per pool, P = ceil(q * n_images)."""
    return int(self.top.shape[1])

  def __len__(self) -> int:
    return int(self.top.shape[0])

  def names(self) -> list[str]:
    """"layer:channel" of every unit."""
    return [f"{layer}:{int(c)}" for layer, c in zip(self.layers, self.channels)]


def pool_size(n_images: int, quantile: float) -> int:
  """P = ceil(q * n) images per pool (MachInterp's `subset_length`)."""
  if not 0.0 < quantile <= 0.5:
    raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
  if n_images < 1:
    raise ValueError("no images")
  # Round q*n first so 0.1 * 1000 is 100, not 101 through floating-point error.
  return int(math.ceil(round(quantile * n_images, 9)))


def pools_from_sweep(result, layers: Sequence[str] | None = None, quantile: float = 0.1,
                     min_size: int = 1) -> Pools:
  """The top / bottom q-quantile pools of every channel of `layers` from a SweepResult.

  Args:
    result: a `cv_jax.sweep.SweepResult` (complete; its tables need depth k >= P).
    layers: swept layers to use (default: all swept layers), in this order.
    quantile: q; each pool holds ceil(q * n) images, n = readable images.
    min_size: smallest acceptable pool (MIS needs K + 1).

  Raises:
    ValueError naming the fix when the sweep is incomplete, too shallow, a layer was not
    swept, the pools would overlap (q > 0.5) or would be smaller than `min_size`.
  """
  info = result.info or {}
  if info.get("complete") is False:
    raise ValueError(f"the sweep is incomplete ({info.get('n_done')} of {info.get('n_images')} "
                     "images); finish it (re-run the sweep with the same workdir) first")
  n = len(result.paths) - len(result.failed)
  p = pool_size(n, quantile)
  if p < min_size:
    raise ValueError(f"q = {quantile} of {n} images gives pools of {p} images, but MIS needs "
                     f"K + 1 = {min_size}; use more images, a larger q or a smaller K")
  if 2 * p > n:
    raise ValueError(f"top and bottom pools of {p} images overlap with only {n} images")
  if result.k < p:
    raise ValueError(f"the sweep kept k = {result.k} images per channel, but q = {quantile} "
                     f"of {n} images needs k >= {p}; re-run the sweep with k >= {p}")
  layers = list(result.layers if layers is None else layers)
  if not layers:
    raise ValueError("no layers to score")
  names, chans, top, bot, tv, bv = [], [], [], [], [], []
  for layer in layers:
    if layer not in result.top_idx:
      raise ValueError(f"layer {layer!r} was not swept; swept layers: {', '.join(result.layers)}")
    c = result.top_idx[layer].shape[0]
    names += [layer] * c
    chans.append(np.arange(c))
    top.append(result.top_idx[layer][:, :p])
    bot.append(result.bot_idx[layer][:, :p])
    tv.append(result.top_val[layer][:, :p])
    bv.append(result.bot_val[layer][:, :p])
  top_val = np.concatenate(tv).astype(np.float32)
  bot_val = np.concatenate(bv).astype(np.float32)
  constant = (top_val[:, 0].astype(np.float64) - bot_val[:, 0]) < CONSTANT_RANGE
  return Pools(layers=names, channels=np.concatenate(chans).astype(np.int32),
               top=np.concatenate(top).astype(np.int32),
               bottom=np.concatenate(bot).astype(np.int32), top_val=top_val,
               bottom_val=bot_val, constant=constant, n_images=n, quantile=float(quantile))
