"""The occlusion command's job: maps of units for image files, written as .npz and heat maps."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import numpy as np

from cv_jax import models
from cv_jax.occlusion.config import parse_fill, parse_size
from cv_jax.occlusion.maps import occlusion_maps
from cv_jax.occlusion.query import load_query


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_maps(model: models.Network, paths: Sequence[str], units: Sequence[str], output: str,
               cfg, figures: bool = True) -> list[str]:
  """Occlusion maps of `units` for every image in `paths`; returns the written .npz paths.

  Per image: `<output>/<stem>_occlusion.npz` (maps (rows, cols, units), base, units, row_starts,
  col_starts, size, stride, fill, image) and, with `figures`, `<output>/<stem>_<unit>.png`.
  Units of one layer share one scan. `cfg`: an occlusion preset (`cv_jax.occlusion.config`).
  All inputs are checked (units parsed, images read) before the first scan.
  """
  if not paths:
    raise ValueError("no image given (--image=PATH)")
  if not units:
    raise ValueError("no units given (--units=mixed4a/3x3:10,...)")
  parsed = [models.Unit.parse(u, model) for u in units]
  by_layer: dict[str, list[int]] = {}
  for i, u in enumerate(parsed):
    by_layer.setdefault(u.layer, []).append(i)
  fill = parse_fill(cfg.fill)
  size = parse_size(cfg.size)
  images = [load_query(p, cfg.resize, cfg.crop) for p in paths]
  os.makedirs(output, exist_ok=True)
  written = []
  for path, img in zip(paths, images):
    maps, base, res = [None] * len(parsed), [None] * len(parsed), None
    for layer, idx in by_layer.items():
      res = occlusion_maps(model, img, layer, [parsed[i] for i in idx], size=size,
                           stride=cfg.stride, fill=fill, chunk=cfg.chunk or None, progress=True)
      for k, i in enumerate(idx):
        maps[i], base[i] = res.maps[..., k], res.base[k]
    stem = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(output, f"{stem}_occlusion.npz")
    np.savez(out, maps=np.stack(maps, -1), base=np.asarray(base, np.float32),
             units=np.asarray([str(u) for u in parsed]), row_starts=res.starts[0],
             col_starts=res.starts[1], size=res.size, stride=cfg.stride, fill=str(cfg.fill),
             image=path)
    written.append(out)
    print(f"wrote {out}: maps {np.stack(maps, -1).shape}")
    if figures:
      _write_figures(model, path, img, res, parsed, maps, base, output, stem)
  return written


def _write_figures(model, path, img, res, parsed, maps, base, output, stem) -> None:
  import matplotlib.pyplot as plt

  from cv_jax.occlusion.figure import heatmap_figure
  for i, u in enumerate(parsed):
    one = dataclasses.replace(res, maps=maps[i][..., None], base=np.asarray([base[i]]), units=(u,))
    label = str(u)
    if u.layer.endswith("_pre_relu") and u.layer[:-len("_pre_relu")] in model.spec.blocks:
      label = f"{u} ({u.branch_str(model)})"
    fig = heatmap_figure(img, one, 0, title=f"{os.path.basename(path)}  {label}: base "
                         f"{base[i]:.3g}, min {maps[i].min():.3g}, max {maps[i].max():.3g}")
    fig.savefig(os.path.join(output, f"{stem}_{_safe(str(u))}.png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
