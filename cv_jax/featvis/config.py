"""Presets for `render` as ml_collections ConfigDicts: "zimmermann2021", "lucid", "lucent" (the
Lucid/Lucent pixel-space FFT renderer) and "maco", "accentuation", "dgn_am" (the other priors;
`config.method` picks the renderer).

`configs/featvis.py:get_config(name)` returns these for the CLI (`--config=...:name`).
"""

from __future__ import annotations

import ml_collections

PRESETS = ("zimmermann2021", "lucid", "lucent", "maco", "accentuation", "dgn_am")
METHODS = ("fourier", "maco", "accentuation", "dgn_am")

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
  * maco (Xplique defaults, successors_spec §1.2): 512 px canvas, phase-only under the shipped
    ImageNet magnitude (`spectrum`: a file from `cv-jax spectrum`, empty = default), 256 Nadam
    steps at lr 1.0, 32 crops per step (centres N(.5, .15), side N(b, .05), b 0.5 → 0.05),
    resized to 224, noise 0.04 (Xplique's 0.08 on its (-1, 1) range).
  * accentuation (faccent defaults, §2): from `seed_images`; Lucid FFT parameterisation
    initialised from each seed, 99 Adam steps at 0.05, 16 box crops per step (side U[.05, .99])
    resized to 224, noise 0.02, L2 penalty to the seed's activations at `reg_layer` (empty =
    the unit's layer) weighted by `reg_alpha` x the step-0 gradient ratio. Canvas 224 (faccent:
    512; see docs/featvis.md).
  * dgn_am (Nguyen et al. 2016, §3.4 script settings for GoogLeNet): the DeePSiM fc6 generator
    (`generator`: .caffemodel or .pt), 200 steps, step size 2.0 → 1e-10 linear, L2 decay 0.99,
    code clipped to [0, bound] (`code_bounds`: a 4096-number text file such as the DGN-AM
    repository's act_range/3x/fc6.txt; empty = lower bound 0 only), start code N(0, 1) from
    NumPy's generator seeded with `seed` (as `act_max.py`).
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
  c.method = "fourier"
  # Rows of the transformed batch per network pass on CPU (0: all at once). Each pass is its own
  # copy of the network in the compiled program (at most MAX_PASSES per step; larger batches get
  # more rows per pass), so 1 trades compile time for speed: cache-sized working sets made the
  # paper's step 12 % faster, its compile 3x longer. The same numbers up to float32 round-off
  # (bitwise at the paper's sizes in our runs). GPU/TPU: all rows at once.
  c.micro_batch = 0
  if name in ("maco", "accentuation", "dgn_am"):
    return _other_prior(c, name)
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
    c.micro_batch = 1  # 2,561 steps: the longer compile pays for itself
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


def _other_prior(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The maco / accentuation / dgn_am fields (see `get_config`)."""
  c.method = name
  c.relu = "standard"
  c.pad = 0
  c.batch = 1
  c.model_size = 224
  c.diversity = 0.0
  if name == "maco":
    c.size = 512
    c.steps = 256
    c.optimizer = "nadam"
    c.lr = 1.0
    c.crops = 32
    c.crop_chunk = 32         # crops per model call inside a step (lower = less memory)
    c.box_size = (0.5, 0.05)  # average crop side at the first and the last step
    c.box_std = 0.05
    c.centre_std = 0.15
    c.min_box = 0.05
    c.noise = 0.04
    c.spectrum = ""
  elif name == "accentuation":
    c.size = 224
    c.steps = 99
    c.optimizer = "adam"
    c.lr = 0.05
    c.crops = 16
    c.box_size = (0.05, 0.99)  # crop side uniform in this range
    c.noise = 0.02
    c.reg_layer = ""
    c.reg_alpha = 1.0
    c.transparency = True
    c.logit_eps = 1e-3
  else:
    c.size = 224               # classifier input: the centre crop of the 256 px generator output
    c.steps = 200
    c.lr = 2.0                 # step size at the first step (CaffeNet scripts: 8.0)
    c.lr_end = 1e-10
    c.l2_decay = 0.99
    c.clip = "bounds"          # bounds: [0, code_bounds]; unit: [-1, 1]; none
    c.code_bounds = ""
    c.generator = ""
  return c
