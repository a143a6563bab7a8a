"""`python -m cv_jax.occlusion` (or `cv-jax occlusion`): occlusion maps of units for images.

    python -m cv_jax.occlusion --image=query.jpg --units=mixed4a/3x3:10,mixed4a_pre_relu:257 \
        --weights=bvlc_googlenet_blobs.npz --output=out/ [--config=configs/occlusion.py:demo]

For each image writes `<output>/<stem>_occlusion.npz` (maps (rows, cols, units), base, units,
row_starts, col_starts, size, stride, fill) and `<output>/<stem>_<unit>.png`, a heat map with the
argmax (green) and argmin (red) occluders drawn. Units of one layer share one scan.
Flags given on the command line override the preset (default zimmermann2021: 90 px, stride 2).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Sequence

import numpy as np
from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _define(kind, name, default, help_):
  if name not in FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help_)


_CONFIG = config_flags.DEFINE_config_file(
    "occlusion_config" if "config" in FLAGS else "config", None,
    "occlusion preset (configs/occlusion.py:zimmermann2021|demo)")
_define("list", "image", None, "Image file(s), comma-separated (also positional arguments).")
_define("list", "units", None, "Units: 'block/branch:i' (e.g. mixed4a/3x3:10) or 'layer:channel'.")
_define("string", "output", "occlusion_out", "Output directory.")
_define("string", "model", None, "Model name (default from the preset: googlenet_bvlc).")
_define("string", "weights", None, "Weights file or cv_jax checkpoint.")
_define("string", "size", None, "Occluder side: pixels (90) or fraction of the image (0.4).")
_define("integer", "stride", None, "Occluder stride in pixels.")
_define("string", "fill", None, "mean | blur | grey level (0.5) | r,g,b.")
_define("integer", "chunk", None, "Positions per forward pass (0: automatic).")
_define("boolean", "figures", True, "Write a heat-map PNG per unit.")


def _parse_fill(text: str):
  if text in ("mean", "blur"):
    return text
  try:
    vals = [float(v) for v in text.split(",")]
  except ValueError:
    raise ValueError(f"--fill must be mean, blur, a grey level or r,g,b; got {text!r}") from None
  if len(vals) not in (1, 3):
    raise ValueError(f"--fill colour needs 1 or 3 values, got {text!r}")
  return vals[0] if len(vals) == 1 else tuple(vals)


def _parse_size(text) -> int | float:
  text = str(text)
  return float(text) if "." in text else int(text)


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run(paths: Sequence[str], units: Sequence[str], output: str, cfg, weights: str | None = None,
        figures: bool = True) -> list[str]:
  """Occlusion maps for every image and unit; returns the written .npz paths."""
  from cv_jax import models
  from cv_jax.occlusion import load_query, occlusion_maps
  if not paths:
    raise ValueError("no image given (--image=PATH)")
  if not units:
    raise ValueError("no units given (--units=mixed4a/3x3:10,...)")
  model = models.load(cfg.model, weights)
  parsed = [models.Unit.parse(u, model) for u in units]
  by_layer: dict[str, list[int]] = {}
  for i, u in enumerate(parsed):
    by_layer.setdefault(u.layer, []).append(i)
  fill = _parse_fill(str(cfg.fill))
  images = [load_query(p, cfg.resize, cfg.crop) for p in paths]  # fail before any long work
  os.makedirs(output, exist_ok=True)
  written = []
  for path, img in zip(paths, images):
    maps, base, res = [None] * len(parsed), [None] * len(parsed), None
    for layer, idx in by_layer.items():
      res = occlusion_maps(model, img, layer, [parsed[i] for i in idx], size=_parse_size(cfg.size),
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
      import dataclasses
      import matplotlib.pyplot as plt
      from cv_jax.occlusion.figure import heatmap_figure
      for i, u in enumerate(parsed):
        one = dataclasses.replace(res, maps=maps[i][..., None], base=np.asarray([base[i]]), units=(u,))
        label = str(u)
        if u.layer.endswith("_pre_relu") and u.layer[:-len("_pre_relu")] in model.spec.blocks:
          label = f"{u} ({u.branch_str(model)})"
        fig = heatmap_figure(img, one, 0, title=f"{os.path.basename(path)}  {label}: base "
                             f"{base[i]:.3g}, min {maps[i].min():.3g}, max {maps[i].max():.3g}")
        png = os.path.join(output, f"{stem}_{_safe(str(u))}.png")
        fig.savefig(png, dpi=90, bbox_inches="tight")
        plt.close(fig)
  return written


def main(argv: Sequence[str]) -> None:
  """absl entry point."""
  from cv_jax.occlusion.config import get_config
  cfg = _CONFIG.value if _CONFIG.value is not None else get_config("zimmermann2021")
  for name in ("model", "size", "stride", "fill", "chunk"):
    if FLAGS[name].present or (name == "model" and FLAGS[name].value is not None):
      setattr(cfg, name, FLAGS[name].value)
  paths = list(FLAGS.image or []) + list(argv[1:])
  try:
    run(paths, FLAGS.units or [], FLAGS.output, cfg, FLAGS.weights, FLAGS.figures)
  except ValueError as e:  # includes models.WeightsError
    print(f"occlusion: error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
