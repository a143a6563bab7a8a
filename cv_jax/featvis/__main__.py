"""CLI: render feature visualisations and write PNGs, a contact sheet and an .npz.

    python -m cv_jax.featvis --config=configs/featvis.py:zimmermann2021 \
        --config.units=mixed4a/pool:42,mixed3a/3x3:125 --weights=PATH [--config.steps=...]

Writes to `config.out`: `<unit>/image_<b>.png` for each image, `contact_sheet.png` (one row per
unit), and `featvis.npz` with `units`, `images`, `objective` and `activation` (U, B) (the unit's
spatial-mean activation on each final image), `diversity` (U,) and, for maco and
accentuation, `transparency`.

    python -m cv_jax.featvis --config=configs/featvis.py:maco --config.units=mixed4a/pool:42
    python -m cv_jax.featvis --config=configs/featvis.py:accentuation --seed_images=a.jpg,b.jpg ...
    python -m cv_jax.featvis --config=configs/featvis.py:dgn_am --config.generator=G.caffemodel ...

Bad input (unknown units, missing weights or generator, no seed images) prints one line
`cv-jax featvis: error: ...` and exits with status 1.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

_CONFIG = config_flags.DEFINE_config_file("config", None, "featvis preset (configs/featvis.py:NAME)")
_MODEL = flags.DEFINE_string("model", "googlenet_bvlc", "model name (cv_jax.models.available())")
_WEIGHTS = flags.DEFINE_string("weights", None, "weights file (default: the model's cache)")
_PAPER = flags.DEFINE_bool("paper_units", False, "render the paper's 18 units (cv_jax.units)")
_SEEDS = flags.DEFINE_list("seed_images", [], "accentuation: seed image files (comma-separated)")


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[0, 1] float -> uint8 as the paper saves it: uint8(clip(x * 255, 0, 255))."""
  return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def contact_sheet(images: np.ndarray, gap: int = 4) -> np.ndarray:
  """(U, B, H, W, 3) -> one uint8 grid image, a row per unit, white gaps."""
  u, b, h, w, _ = images.shape
  sheet = np.full((u * h + (u + 1) * gap, b * w + (b + 1) * gap, 3), 255, np.uint8)
  for i in range(u):
    for j in range(b):
      y, x = gap + i * (h + gap), gap + j * (w + gap)
      sheet[y:y + h, x:x + w] = to_uint8(images[i, j])
  return sheet


def write_outputs(out: dict, folder: str) -> None:
  """PNGs per image, the contact sheet and featvis.npz into `folder`."""
  os.makedirs(folder, exist_ok=True)
  for name, imgs in zip(out["units"], out["images"]):
    sub = os.path.join(folder, re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
    os.makedirs(sub, exist_ok=True)
    for b, im in enumerate(imgs):
      Image.fromarray(to_uint8(im)).save(os.path.join(sub, f"image_{b}.png"))
  Image.fromarray(contact_sheet(out["images"])).save(os.path.join(folder, "contact_sheet.png"))
  extra = {k: out[k] for k in ("transparency",) if k in out}
  np.savez(os.path.join(folder, "featvis.npz"), units=np.asarray(out["units"]),
           images=out["images"], objective=out["objective"], activation=out["activation"],
           diversity=out["diversity"], **extra)


def main(argv):
  """Render, write the outputs; one-line errors for bad input."""
  from cv_jax.models import WeightsError
  try:
    _main(argv)
  except (app.UsageError, WeightsError, ValueError, OSError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    sys.exit(1)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from cv_jax import models, units as paper
  from cv_jax.featvis import get_config, render
  cfg = _CONFIG.value if _CONFIG.value is not None else get_config("zimmermann2021")
  names = list(paper.PAPER_UNITS) if _PAPER.value else [s for s in cfg.units.split(",") if s.strip()]
  if not names:
    raise app.UsageError("give units with --config.units=a,b,... or --paper_units")
  method = cfg.get("method", "fourier")
  if method == "accentuation" and not _SEEDS.value:
    raise app.UsageError("the accentuation preset needs seed images: --seed_images=a.jpg,b.jpg")
  if _SEEDS.value and method != "accentuation":
    raise app.UsageError("--seed_images is used by the accentuation preset only")
  for p in _SEEDS.value:
    if not os.path.exists(p):
      raise app.UsageError(f"seed image not found: {p}")
  generator = None
  if method == "dgn_am":
    from cv_jax.models.deepsim_weights import load_generator
    generator = load_generator(cfg.get("generator") or None)
  model = models.load(_MODEL.value, _WEIGHTS.value)
  out = render(model, names, cfg, progress=True, seed_images=_SEEDS.value or None,
               generator=generator)
  write_outputs(out, cfg.out)
  for n, a in zip(out["units"], out["activation"]):
    print(f"{n}: activation per image {np.round(a, 2).tolist()}")
  print(f"wrote {cfg.out}")


if __name__ == "__main__":
  app.run(main)
