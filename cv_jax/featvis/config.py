"""Presets for `render` as ml_collections ConfigDicts: "zimmermann2021", "lucid", "lucent".

`configs/featvis.py:get_config(name)` returns these for the CLI (`--config=...:name`).
"""

from __future__ import annotations

import ml_collections

PRESETS = ("zimmermann2021", "lucid", "lucent")

_LUCID_STANDARD = (("pad", 12), ("jitter", 8),
                   ("scale", tuple(1 + (i - 5) / 50.0 for i in range(11))),
                   ("rotate", tuple(range(-10, 11)) + 5 * (0,)), ("jitter", 4))


def get_config(name: str = "zimmermann2021") -> ml_collections.ConfigDict:
  """The named preset.

  * zimmermann2021 (the paper's recipe): 224 px images optimised on a 256 px canvas
    (pad 16, cropped after), batch 9, diversity weight 100 on the unit's whole pre-ReLU layer,
    jitter 16, scale {1, .975, 1.025, .95, 1.05}, rotate -5..5°, jitter 8 (Lucid semantics),
    2561 Adam updates at 0.05, Lucid's redirected ReLU (first steps). `batch=4` is the Mixed
    condition's separate optimisation.
  * lucid: `render_vis` defaults: 128 px, batch 1, standard transforms, 513 updates (Lucid's
    `range(512 + 1)`), redirected ReLU, variable model input size.
  * lucent: 128 px, 512 updates, Lucent's transforms and 0.1-leak ReLU, upsampled to 224.
  """
  c = ml_collections.ConfigDict()
  c.preset = name
  c.units = ""              # CLI: comma-separated unit strings
  c.out = "featvis_out"     # CLI: output folder
  c.seed = 0
  c.optimizer = "adam"
  c.lr = 0.05
  c.fft = True
  c.decorrelate = True
  c.sigmoid = True
  c.sd = 0.01
  c.decay_power = 1.0
  c.thresholds = ()
  c.diversity_layer = ""
  if name == "zimmermann2021":
    c.size = 224
    c.pad = 16
    c.batch = 9
    c.steps = 2561
    c.diversity = 100.0
    c.relu = "lucid"
    c.mode = "lucid"
    c.transforms = (("jitter", 16), ("scale", (1.0, 0.975, 1.025, 0.95, 1.05)),
                    ("rotate", tuple(range(-5, 6))), ("jitter", 8))
  elif name == "lucid":
    c.size = 128
    c.pad = 0
    c.batch = 1
    c.steps = 513
    c.diversity = 0.0
    c.relu = "lucid"
    c.mode = "lucid"
    c.transforms = _LUCID_STANDARD
  elif name == "lucent":
    c.size = 128
    c.pad = 0
    c.batch = 1
    c.steps = 512
    c.diversity = 0.0
    c.relu = "lucent"
    c.mode = "lucent"
    c.transforms = _LUCID_STANDARD + (("upsample", 224),)
  else:
    raise ValueError(f"unknown featvis preset {name!r}; choose one of {PRESETS}")
  return c
