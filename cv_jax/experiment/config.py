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

The 2-AFC exemplar task (`task = "exemplar_2afc"`, cv_jax.experiment.exemplar_2afc; any preset
can switch with --config.task=exemplar_2afc):
* borowski2021: the ICLR 2021 predecessor's design (paper_spec §7): inceptionv1 over ImageNet
  validation (set IMAGENET_VAL), the paper's 18 units, 9 min + 9 max references from rank bins
  of 20 with the paper's seeds, queries from the most extreme bins (query_percentile None),
  natural and synthetic (min and max feature visualizations) references, catch trials j, t, z.
* exemplar_2afc_demo: the same on the demo assets (BVLC, 1000 sample images) with IMI's queries
  from the 10th / 90th percentile window, bins of 10, 2 image sets, demo-sized visualizations.
* exemplar_2afc_tiny: 2 units on 80 sample images (tests).

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
  # featvis.preset picks the prior of the synthetic condition: zimmermann2021 (the paper),
  # lucid, lucent, maco (rendered at 224) or dgn_am (overrides.generator=PATH), so a study
  # can compare priors; overrides set any field of that preset.
  c.featvis = ml_collections.ConfigDict(dict(
      preset="zimmermann2021", batch=9, mixed_batch=4, units_per_call=6,
      overrides=ml_collections.ConfigDict()))
  c.occlusion = ml_collections.ConfigDict(dict(size=90, stride=2, fill="mean", chunk=None))
  c.blur = ml_collections.ConfigDict(dict(stride=2, ksize=21, sigma=3.5))
  c.saliency = "spectral_residual"
  c.tasks = ml_collections.ConfigDict(dict(n_tasks=50, seed=1, catch_mode="paper"))
  c.report_set = 0
  # "occlusion" (Zimmermann et al. 2021) or "exemplar_2afc" (Borowski et al. 2021 / IMI).
  c.task = "occlusion"
  # 2-AFC selection: references in n_references rank bins of bin_size from each end; queries
  # from the window at round(query_percentile * n) (IMI: 0.1), or None for the most extreme
  # bin (Borowski et al. 2021). bin_size = image sets available.
  c.exemplar_2afc = ml_collections.ConfigDict(dict(n_references=9, bin_size=20,
                                                   query_percentile=0.1, seed=0))
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config `arg`: "zimmermann2021", "demo", "tiny", or a 2-AFC preset
  ("borowski2021", "exemplar_2afc_demo", "exemplar_2afc_tiny")."""
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
        size=64, pad=8, steps=32, micro_batch=0,  # 32 steps: compile time dominates
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
        size=32, pad=0, steps=3, micro_batch=0, transforms=(("jitter", 2),)))
    c.occlusion.stride = 30
    c.blur.stride = 45
    c.tasks.n_tasks = 4
    c.tasks.catch_mode = "swap"
  elif name in PRESETS_2AFC:
    _exemplar_2afc(c, name)
  else:
    raise ValueError(f"unknown experiment config {name!r}; choose zimmermann2021, demo, tiny, "
                     "borowski2021, exemplar_2afc_demo or exemplar_2afc_tiny")
  return c


PRESETS_2AFC = ("borowski2021", "exemplar_2afc_demo", "exemplar_2afc_tiny")


def _exemplar_2afc(c: ml_collections.ConfigDict, name: str) -> None:
  """Fill in a 2-AFC exemplar preset (module docstring)."""
  c.task = "exemplar_2afc"
  c.conditions = ("natural", "synthetic")
  c.practice = ()
  if name == "borowski2021":
    c.workdir = "runs/borowski2021"
    c.model.name = "inceptionv1"
    c.data.source = "folder:" + os.environ.get("IMAGENET_VAL", "/path/to/imagenet/val")
    c.exemplar_2afc.query_percentile = None
    c.featvis.batch = 9
    return
  c.model.name = "googlenet_bvlc"
  c.model.weights = DEMO_WEIGHTS
  c.data.source = DEMO_IMAGES
  c.n_sets = 2
  c.tasks.n_tasks = 4
  c.featvis.overrides = ml_collections.ConfigDict(dict(
      size=64, pad=8, steps=32, micro_batch=0,
      transforms=(("jitter", 8), ("rotate", tuple(range(-5, 6))), ("jitter", 4))))
  if name == "exemplar_2afc_demo":
    c.workdir = "runs/exemplar_2afc_demo"
    c.catch = tuple(f"{paper_units.CATCH_UNITS[k]}@{i}" for i, k in enumerate("jtz"))
    c.exemplar_2afc.bin_size = 10
    c.featvis.units_per_call = 21
  else:
    c.workdir = "runs/exemplar_2afc_tiny"
    c.data.max_images = 80
    c.units = ("mixed3a/3x3:125", "mixed3b/pool:14")
    c.catch = ("mixed3a/pool:3@2",)
    c.exemplar_2afc.bin_size = 3
    c.exemplar_2afc.query_percentile = 0.4
    c.sweep.batch_size = 8
    c.featvis.units_per_call = 3
    c.featvis.overrides = ml_collections.ConfigDict(dict(
        size=32, pad=0, steps=3, micro_batch=0, transforms=(("jitter", 2),)))
