"""Files of a feature-visualization run: a PNG per image, a contact sheet, `featvis.npz`."""

from __future__ import annotations

import os
import re

import numpy as np

from cv_jax.data.png import save_png, to_uint8


def contact_sheet(images: np.ndarray, gap: int = 4) -> np.ndarray:
  """(U, B, H, W, 3) floats in [0, 1] -> one uint8 grid image, a row per unit, white gaps."""
  u, b, h, w, _ = images.shape
  sheet = np.full((u * h + (u + 1) * gap, b * w + (b + 1) * gap, 3), 255, np.uint8)
  for i in range(u):
    for j in range(b):
      y, x = gap + i * (h + gap), gap + j * (w + gap)
      sheet[y:y + h, x:x + w] = to_uint8(images[i, j])
  return sheet


def write_outputs(out: dict, folder: str) -> None:
  """`render`'s result into `folder`: `<unit>/image_<b>.png` per image, `contact_sheet.png` and
  `featvis.npz` (units, images, objective, activation, diversity, and `transparency` when the
  method gives one)."""
  os.makedirs(folder, exist_ok=True)
  for name, imgs in zip(out["units"], out["images"]):
    sub = os.path.join(folder, re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
    for b, im in enumerate(imgs):
      save_png(os.path.join(sub, f"image_{b}.png"), im)
  save_png(os.path.join(folder, "contact_sheet.png"), contact_sheet(out["images"]))
  extra = {k: out[k] for k in ("transparency",) if k in out}
  np.savez(os.path.join(folder, "featvis.npz"), units=np.asarray(out["units"]),
           images=out["images"], objective=out["objective"], activation=out["activation"],
           diversity=out["diversity"], **extra)
