"""Occlusion presets (ml_collections): `get_config("zimmermann2021" | "demo")`, and parsing
their text fields (`parse_fill`, `parse_size`)."""

from __future__ import annotations

import ml_collections

PRESETS = ("zimmermann2021", "demo")


def get_config(name: str | None = None) -> ml_collections.ConfigDict:
  """zimmermann2021: the paper's 90 px (40 % of 224) occluder, stride 2 (68 x 68 = 4,624
  positions), mean-colour fill, BVLC weights by default. demo: the same occluder at stride 8
  (17 x 17 = 289 positions, ~16x faster), for quick looks; its argmin/argmax are not the paper's."""
  name = name or "zimmermann2021"
  if name not in PRESETS:
    raise ValueError(f"unknown occlusion preset {name!r}; choose one of {PRESETS}")
  c = ml_collections.ConfigDict()
  c.model = "googlenet_bvlc"
  c.size = "90"          # pixels ("90") or a fraction of the shorter side ("0.4")
  c.stride = 2 if name == "zimmermann2021" else 8
  c.fill = "mean"        # mean | blur | a grey level "0.5" | "r,g,b"
  c.chunk = 0            # positions per forward pass; 0 = cv_jax.occlusion.default_chunk
  c.resize = 256
  c.crop = 224
  return c


def parse_fill(text: str):
  """A config's `fill` text -> `occlusion_maps`' fill: "mean", "blur", a grey level or (r, g, b)."""
  text = str(text)
  if text in ("mean", "blur"):
    return text
  try:
    vals = [float(v) for v in text.split(",")]
  except ValueError:
    raise ValueError(f"--fill must be mean, blur, a grey level or r,g,b; got {text!r}") from None
  if len(vals) not in (1, 3):
    raise ValueError(f"--fill colour needs 1 or 3 values, got {text!r}")
  return vals[0] if len(vals) == 1 else tuple(vals)


def parse_size(text) -> int | float:
  """A config's `size` text -> pixels (int, "90") or a fraction of the shorter side ("0.4")."""
  text = str(text).strip()
  try:
    return float(text) if "." in text else int(text)
  except ValueError:
    raise ValueError(f"--size must be pixels (90) or a fraction of the image (0.4); got {text!r}"
                     ) from None
