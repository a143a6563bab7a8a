"""`cv-jax experiment` / `python -m cv_jax.experiment`: the whole study, resumable.

    python -m cv_jax.experiment --config=configs/experiment.py:demo
    python -m cv_jax.experiment --config=configs/experiment.py:zimmermann2021 \
        --config.data.source=folder:/data/imagenet/train --workdir=runs/paper

Stages: sweep -> exemplars -> featvis -> occlusion -> blur -> trials -> baselines -> report.
Re-running the same command resumes: finished stages (and finished items inside a stage) are
skipped. Prints a summary at the end; the report is <workdir>/report/report.html.
"""

from __future__ import annotations

import sys

from absl import flags

from cv_jax import assets, cli_support
from cv_jax.experiment import pipeline

_CONFIG = cli_support.define_config_flag("experiment", "demo")
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (default: config.workdir)")
_IMAGES = flags.DEFINE_string("images", None, "image source, folder:/path or tfds:name:split "
                              "(default: config.data.source)")
_WEIGHTS = flags.DEFINE_string("weights", None, "model weights file (default: config.model.weights)")
_STAGES = flags.DEFINE_list("stages", None, "stages to run, in order (default: all of the "
                            f"config's task; occlusion: {','.join(pipeline.STAGES)}; "
                            f"exemplar_2afc: {','.join(pipeline.STAGES_2AFC)})")
_PROGRESS = flags.DEFINE_bool("progress", True, "progress bars")


def _fetch_inputs(cfg) -> None:
  """Find or download the catalogued weights and images the config uses, before any work.

  One AssetError names everything that is missing (e.g. offline, both the weights and images).
  """
  names = []
  if not cfg.model.weights and cfg.model.get("random_init") is None and \
      cfg.model.name in assets.ASSETS:
    names.append(cfg.model.name)
  if cfg.data.source.startswith("asset:"):
    names.append(cfg.data.source[len("asset:"):])
  assets.ensure(names, progress=_PROGRESS.value)


def main(argv: list[str]) -> None:
  """absl main: run (or resume) the configured experiment and print the summary."""
  if len(argv) > 1:
    raise cli_support.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cfg = cli_support.config_value(_CONFIG)
  try:
    valid = pipeline.stages_for(cfg)
  except ValueError as e:
    raise cli_support.UsageError(str(e)) from None
  unknown = [s for s in (_STAGES.value or ()) if s not in valid]
  if unknown:
    raise cli_support.UsageError(f"unknown stage {unknown[0]!r} in --stages; stages: "
                                 f"{','.join(valid)}")
  if _WORKDIR.value:
    cfg.workdir = _WORKDIR.value
  if _IMAGES.value:
    cfg.data.source = _IMAGES.value
  if _WEIGHTS.value:
    cfg.model.weights = _WEIGHTS.value
  if not cfg.workdir:
    raise cli_support.UsageError("no workdir: pass --workdir")
  if not cfg.data.source:
    raise cli_support.UsageError("no image source: pass --images=folder:/path")
  cli_support.check_model(cfg.model.name)
  _fetch_inputs(cfg)
  summary = pipeline.run(cfg, stages=_STAGES.value, progress=_PROGRESS.value,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
  print(pipeline.format_summary(summary), flush=True)


if __name__ == "__main__":
  cli_support.run("experiment", main)
