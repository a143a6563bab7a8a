"""Presets of the whole study: `cv-jax experiment --config=configs/experiment.py:NAME`
(`cv-jax experiment` alone runs demo; these are the installed package's presets).

NAME:
* zimmermann2021: the paper: inceptionv1, 18 units + catch (j, t, z) + 10 practice
  units, 599,552 random ImageNet training images (set IMAGENET_TRAIN or --config.data.source),
  10 image sets, 90 px occluder at stride 2, the full feature-visualization recipe (2,561 steps,
  batch 9 and a separate batch 4), blur windows at stride 2, 50 tasks per condition.
* demo: the README quickstart: BVLC GoogLeNet weights and the 1000 ImageNet sample images, each
  found by `cv_jax.assets` (the shared folder, `$CV_JAX_HOME`, else a checked download; `--weights`
  and `--images` override), the same 18 units, 3 catch and 2 practice units, reduced sizes
  (2 image sets, 64 px feature visualizations with 32 steps and no random scale, occluder
  stride 12, blur-window stride 45, 4 tasks per condition).
* tiny: 2 units on 40 sample images, a few steps everywhere (tests).

Units are "block/branch:index" strings (index within the branch), so they map onto both
inceptionv1 and BVLC GoogLeNet (Zimmermann et al. 2021); catch and practice entries are
"unit@image_set".
"""

from __future__ import annotations

import os

import ml_collections

from cv_jax import paper_units

# Resolved when the experiment runs (cv_jax.assets): shared folder, $CV_JAX_HOME, download.
DEMO_WEIGHTS = ""  # models.load's default for googlenet_bvlc
DEMO_IMAGES = "asset:imagenet_samples"

# The paper's units, as "block/branch:index" strings: cv_jax.paper_units.
PAPER_UNITS = paper_units.PAPER_UNITS
# Catch units j, t, z and practice units, as "unit@image_set".
CATCH = tuple(f"{paper_units.CATCH_UNITS[k]}@{paper_units.CATCH_IMAGE_SETS[k]}" for k in "jtz")
PRACTICE = tuple(f"{u}@{b}" for u, b in paper_units.PRACTICE_UNITS)

CONDITIONS = ("synthetic", "natural", "mixed", "blur", "none")


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = ""
  c.workdir = ""
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="inceptionv1", weights="", random_init=None))
  c.data = ml_collections.ConfigDict(dict(source="", max_images=None, subset_seed=None))
  c.units = PAPER_UNITS
  c.catch = CATCH
  c.practice = PRACTICE
  c.n_sets = 10
  c.conditions = CONDITIONS
  c.sweep = ml_collections.ConfigDict(dict(k=200, batch_size=64, micro_batch=8))
  # The paper's exemplar selection: 10 rank bins of 20; the bin permutation seed is channel + 1.
  c.exemplars = ml_collections.ConfigDict(dict(n_bins=10, bin_size=20, seed_offset=1))
  c.featvis = ml_collections.ConfigDict(dict(
      preset="zimmermann2021", batch=9, mixed_batch=4, units_per_call=6,
      overrides=ml_collections.ConfigDict()))
  c.occlusion = ml_collections.ConfigDict(dict(size=90, stride=2, fill="mean", chunk=None))
  c.blur = ml_collections.ConfigDict(dict(stride=2, ksize=21, sigma=3.5))
  c.saliency = "spectral_residual"
  c.tasks = ml_collections.ConfigDict(dict(n_tasks=50, seed=1, catch_mode="paper"))
  c.report_set = 0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config `arg`: "zimmermann2021", "demo" or "tiny"."""
  name = arg or "demo"
  c = _base()
  c.name = name
  if name == "zimmermann2021":
    c.workdir = "runs/zimmermann2021"
    c.model.name = "inceptionv1"
    c.data.source = "folder:" + os.environ.get("IMAGENET_TRAIN", "/path/to/imagenet/train")
    c.data.max_images = 599_552
    c.data.subset_seed = 1234
  elif name == "demo":
    c.workdir = "runs/demo"
    c.model.name = "googlenet_bvlc"
    c.model.weights = DEMO_WEIGHTS
    c.data.source = DEMO_IMAGES
    c.practice = PRACTICE[:2]
    c.n_sets = 2
    c.featvis.units_per_call = 23
    c.featvis.overrides = ml_collections.ConfigDict(dict(
        size=64, pad=8, steps=32,
        # No random scale: featvis compiles one program branch per scale (5x compile time).
        transforms=(("jitter", 8), ("rotate", tuple(range(-5, 6))), ("jitter", 4))))
    c.occlusion.stride = 12
    c.blur.stride = 45
    c.tasks.n_tasks = 4
    c.tasks.catch_mode = "swap"
  elif name == "tiny":
    c.workdir = "runs/tiny"
    c.model.name = "googlenet_bvlc"
    c.model.weights = DEMO_WEIGHTS
    c.data.source = DEMO_IMAGES
    c.data.max_images = 40
    c.units = ("mixed3a/3x3:125", "mixed3b/pool:14")
    c.catch = ("mixed3a/pool:3@2",)
    c.practice = ("mixed3a/3x3:125@3",)
    c.n_sets = 2
    c.sweep.k = 40
    c.sweep.batch_size = 8
    c.exemplars.bin_size = 4
    c.featvis.units_per_call = 3
    c.featvis.overrides = ml_collections.ConfigDict(dict(
        size=32, pad=0, steps=3, transforms=(("jitter", 2),)))
    c.occlusion.stride = 30
    c.blur.stride = 45
    c.tasks.n_tasks = 4
    c.tasks.catch_mode = "swap"
  else:
    raise ValueError(f"unknown experiment config {name!r}; choose zimmermann2021, demo or tiny")
  return c
