"""`OcclusionResult` (the maps of one image) and `extreme_positions` (the paper's argmin/argmax)."""

from __future__ import annotations

import dataclasses

import numpy as np

from cv_jax.models import Unit


def extreme_positions(map2d) -> tuple[tuple[int, int], tuple[int, int]]:
  """(argmin (row, col), argmax (row, col)) of a 2-D map, ties to the first row-major index.

  Indices are grid indices; multiply by the stride (or index `OcclusionResult.starts`) for pixels.
  """
  m = np.asarray(map2d)
  if m.ndim != 2 or m.size == 0:
    raise ValueError(f"expected a non-empty 2-D map, got shape {m.shape}")
  if np.isnan(m).any():
    raise ValueError("map contains NaN")
  lo = np.unravel_index(int(np.argmin(m)), m.shape)
  hi = np.unravel_index(int(np.argmax(m)), m.shape)
  return (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1]))


@dataclasses.dataclass(frozen=True)
class OcclusionResult:
  """Occlusion maps of one image.

  maps: (rows, cols, n_units) float32 activation with the occluder at grid (i, j), i.e. at pixel
    (starts[0][i], starts[1][j]). base: (n_units,) activations of the un-occluded image.
  starts: (row starts, col starts) in pixels. size: occluder side in pixels.
  units: the `Unit`s, in map order. layer, stride, fill: as requested.
  """
  maps: np.ndarray
  base: np.ndarray
  starts: tuple[np.ndarray, np.ndarray]
  size: int
  units: tuple[Unit, ...] = ()
  layer: str = ""
  stride: int = 1
  fill: str = "mean"

  def extremes(self, k: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixel starts ((row, col) of argmin, (row, col) of argmax) for unit `k` (paper ties)."""
    (a, b), (c, d) = extreme_positions(self.maps[..., k])
    r, cc = self.starts
    return (int(r[a]), int(cc[b])), (int(r[c]), int(cc[d]))

  def relative_difference(self, k: int = 0) -> float:
    """The paper's relative activation difference (max - min) / base (Fig. 7 analysis), with
    max/min over the positions and the base, as over its 4,625-entry arrays."""
    vals = np.append(self.maps[..., k].reshape(-1), self.base[k])
    return float((vals.max() - vals.min()) / self.base[k])

  def flat(self, k: int = 0) -> np.ndarray:
    """The 1-D activation array of unit `k` in the paper's position order (without the extra entry)."""
    return self.maps[..., k].reshape(-1)
