"""Heat-map figure of one occlusion map with the argmin / argmax occluders drawn."""

from __future__ import annotations

import numpy as np


def heatmap_figure(image: np.ndarray, result, k: int = 0, title: str | None = None):
  """Matplotlib figure: the image with the argmax (green) and argmin (red) occluders, and the map.

  The map is drawn in pixel coordinates of the occluder's top-left corner; the base (un-occluded)
  activation is given in the title. Uses the Agg backend; the caller saves and closes it.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  (rlo, clo), (rhi, chi) = result.extremes(k)
  m = result.maps[..., k]
  rs, cs = result.starts
  s = result.size
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
  axes[0].imshow(np.clip(image, 0, 1))
  for (r, c), colour, label in (((rhi, chi), "lime", "argmax"), ((rlo, clo), "red", "argmin")):
    axes[0].add_patch(Rectangle((c - 0.5, r - 0.5), s, s, fill=False, lw=2, ec=colour, label=label))
  axes[0].legend(loc="lower right", fontsize=8)
  axes[0].set_axis_off()
  step = result.stride
  extent = (cs[0] - step / 2, cs[-1] + step / 2, rs[-1] + step / 2, rs[0] - step / 2)
  im = axes[1].imshow(m, cmap="viridis", extent=extent)
  axes[1].plot([chi], [rhi], marker="+", color="lime", ms=12, mew=2)
  axes[1].plot([clo], [rlo], marker="x", color="red", ms=10, mew=2)
  axes[1].set_xlabel("occluder column start (px)")
  axes[1].set_ylabel("occluder row start (px)")
  fig.colorbar(im, ax=axes[1], fraction=0.046, label="activation (spatial mean)")
  unit = result.units[k] if result.units else k
  fig.suptitle(title or f"{unit}: base {result.base[k]:.3g}, min {m.min():.3g}, max {m.max():.3g}")
  fig.tight_layout()
  return fig
