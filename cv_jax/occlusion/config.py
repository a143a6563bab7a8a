"""Occlusion presets (ml_collections): `get_config("zimmermann2021" | "demo")`."""

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
