"""`cv-jax sweep` (or `python -m cv_jax.sweep`): the dataset sweep, resumable from its workdir.

    cv-jax sweep --config=configs/sweep.py:demo [--config.FIELD=VALUE ...]

Runs `cv_jax.sweep.run` with the config's settings (default: the installed package's `demo`
preset) and writes workdir/sweep_result.{npz,json} and workdir/report.json (counts, images/s,
unreadable files).
"""

from __future__ import annotations

import json
import sys

from cv_jax import cli_support

_CONFIG = cli_support.define_config_flag("sweep", "demo")


def sweep_from_config(c):
  """Load the model and run the sweep a config describes (the CLI without flag parsing)."""
  import jax

  from cv_jax.data import open_source
  from cv_jax.sweep import run
  if c.get("coordinator_address"):
    jax.distributed.initialize(c.coordinator_address, num_processes=c.num_processes,
                               process_id=c.process_id)
  # The model's name, then the images: a typo or a bad folder fails before the weights are
  # looked up (or anything is downloaded).
  cli_support.check_model(c.model)
  source = open_source(c.source, resize=c.resize, crop=c.crop, max_images=c.max_images or None,
                       subset_seed=None if c.subset_seed < 0 else c.subset_seed)
  model = cli_support.load_model(c.model, c.weights, random_init=c.random_init)
  return run(model, source, c.layers, k=c.k, batch_size=c.batch_size, workdir=c.workdir or None,
             keep_matrix=c.keep_matrix, progress=c.progress, micro_batch=c.micro_batch,
             workers=c.workers, checkpoint_every=c.checkpoint_every,
             stop_after=c.stop_after or None)


def main(argv: list[str]) -> None:
  """Run the sweep; print its summary as JSON, and each unreadable file on stderr."""
  if len(argv) > 1:
    raise cli_support.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  res = sweep_from_config(cli_support.config_value(_CONFIG))
  info = {key: res.info[key] for key in ("source", "model", "n_images", "n_done", "n_failed",
                                          "k", "devices", "images_per_s", "elapsed_s")}
  print(json.dumps(info))
  for path, why in res.failed:
    print(f"unreadable: {path}: {why}", file=sys.stderr)


if __name__ == "__main__":
  cli_support.run("sweep", main)
