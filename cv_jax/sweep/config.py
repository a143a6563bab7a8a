"""Sweep presets: `cv-jax sweep --config=configs/sweep.py:NAME` (`cv-jax sweep` alone: demo).

NAME:
  paper  InceptionV1 over ImageNet train via TFDS (a ~600k random subset as in the paper: the
         paper swept 1171 x 512 = 599,552 train images), k = 200, all nine mixedXX_pre_relu.
  demo   BVLC GoogLeNet over the 1000 ImageNet sample images (k = 200); weights and images are
         found by `cv_jax.assets` (shared folder, `$CV_JAX_HOME`, else a checked download).
  test   tiny: 24 sample images at 64 px, random-weight InceptionV1 (smoke tests).
Override any field: --config.source=folder:/data/imagenet/train --config.workdir=runs/sweep
"""

from __future__ import annotations

import ml_collections

DEMO_IMAGES = "asset:imagenet_samples"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Sweep settings; `arg` picks a preset (paper, demo, test)."""
  c = ml_collections.ConfigDict()
  c.model = "inceptionv1"          # cv_jax.models name
  c.weights = ""                   # weights path ("" = default location / download)
  c.random_init = -1               # >= 0: random weights with this seed instead (tests)
  c.source = "tfds:imagenet2012:train"  # folder:/path or tfds:name:split
  c.layers = ",".join(f"mixed{b}_pre_relu" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))
  c.k = 200                        # top-k and bottom-k per channel
  c.batch_size = 64                # global batch; multiple of micro_batch x devices
  c.micro_batch = 8                # images per device per forward (fixes the bits)
  c.workers = 8                    # decoding threads
  c.resize = 256                   # shorter side (PIL bilinear)
  c.crop = 224                     # centre crop
  c.max_images = 0                 # 0 = all; else a subset of this size
  c.subset_seed = -1               # >= 0: random subset (with max_images); else the first ones
  c.keep_matrix = False            # also store the (N, C) float16 activation matrix per layer
  c.workdir = "runs/sweep"         # checkpoints, result, report.json
  c.checkpoint_every = 50          # batches between orbax checkpoints
  c.progress = True
  c.stop_after = 0                 # > 0: stop after this many images (benchmarks/tests)
  # Multi-host (jax.distributed); leave empty for one host.
  c.coordinator_address = ""
  c.num_processes = 1
  c.process_id = 0

  arg = arg or "paper"
  if arg == "paper":
    c.max_images = 599_552
    c.subset_seed = 1234
    c.batch_size = 512
    c.micro_batch = 32
  elif arg == "demo":
    c.model = "googlenet_bvlc"
    c.weights = ""  # models.load's default: cv_jax.assets finds or downloads it
    c.source = DEMO_IMAGES
    c.workdir = "runs/sweep_demo"
    c.batch_size = 32
  elif arg == "test":
    c.random_init = 0
    c.source = DEMO_IMAGES
    c.max_images = 24
    c.resize, c.crop = 80, 64
    c.layers = "mixed3a_pre_relu,mixed4a_pre_relu"
    c.k = 5
    c.batch_size, c.micro_batch = 8, 2
    c.workers = 2
    c.checkpoint_every = 1
  else:
    raise ValueError(f"unknown sweep config {arg!r}; choose paper, demo or test")
  return c
