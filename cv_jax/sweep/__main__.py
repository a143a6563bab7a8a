"""`python -m cv_jax.sweep --config=configs/sweep.py:demo [--config.FIELD=VALUE ...]`.

Runs the dataset sweep (see cv_jax.sweep.run), resumable from its workdir, and writes
workdir/sweep_result.{npz,json} and workdir/report.json (counts, images/s, unreadable files).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from absl import app, flags
from ml_collections import config_flags

if TYPE_CHECKING:
  from cv_jax.sweep import SweepResult

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                               "configs", "sweep.py")
if "config" not in flags.FLAGS:
  config_flags.DEFINE_config_file(
      "config", os.path.normpath(_DEFAULT_CONFIG) + ":demo",
      "Sweep config file and preset, e.g. configs/sweep.py:paper (fields: see that file).")
FLAGS = flags.FLAGS


def sweep_from_config(c) -> SweepResult:
  """Load the model and run the sweep a config describes (the CLI without flag parsing)."""
  import jax
  from cv_jax import models
  from cv_jax.sweep import run

  if c.get("coordinator_address"):
    jax.distributed.initialize(c.coordinator_address, num_processes=c.num_processes,
                               process_id=c.process_id)
  if c.random_init >= 0:
    model = models.load(c.model, random_init=c.random_init)
  else:
    model = models.load(c.model, c.weights or None)
  return run(model, c.source, c.layers, k=c.k, batch_size=c.batch_size, workdir=c.workdir or None,
             keep_matrix=c.keep_matrix, progress=c.progress, micro_batch=c.micro_batch,
             workers=c.workers, checkpoint_every=c.checkpoint_every, resize=c.resize,
             crop=c.crop, max_images=c.max_images or None,
             subset_seed=None if c.subset_seed < 0 else c.subset_seed,
             stop_after=c.stop_after or None)


def main(argv) -> None:
  """absl entry point."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from absl import logging
  from cv_jax.models import WeightsError
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
  try:
    res = sweep_from_config(FLAGS.config)
  except (ValueError, ImportError, WeightsError) as e:
    print(f"sweep: error: {e}", file=sys.stderr)
    sys.exit(1)
  info = {key: res.info[key] for key in ("source", "model", "n_images", "n_done", "n_failed",
                                          "k", "devices", "images_per_s", "elapsed_s")}
  print(json.dumps(info))
  for path, why in res.failed:
    print(f"unreadable: {path}: {why}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
