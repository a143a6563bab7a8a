"""`cv-jax featvis` (or `python -m cv_jax.featvis`): render feature visualizations to files.

    cv-jax featvis --config=configs/featvis.py:zimmermann2021 \
        --config.units=mixed4a/pool:42,mixed3a/3x3:125 --weights=PATH [--config.steps=...]

Writes to `config.out` what `cv_jax.featvis.outputs.write_outputs` writes: `<unit>/image_<b>.png`,
`contact_sheet.png` (a row per unit) and `featvis.npz` (units, images, objective, activation,
diversity; `transparency` for maco and accentuation).

    cv-jax featvis --config=configs/featvis.py:maco --config.units=mixed4a/pool:42
    cv-jax featvis --config=configs/featvis.py:accentuation --seed_images=a.jpg,b.jpg ...
    cv-jax featvis --config=configs/featvis.py:dgn_am --config.generator=G.caffemodel ...
"""

from __future__ import annotations

import numpy as np
from absl import flags

from cv_jax import cli_support

_CONFIG = cli_support.define_config_flag("featvis", "zimmermann2021")
_MODEL = flags.DEFINE_string("model", "googlenet_bvlc", "model name (cv_jax.models.available())")
_WEIGHTS = flags.DEFINE_string("weights", None, "weights file (default: the model's cache)")
_PAPER = flags.DEFINE_bool("paper_units", False, "render the paper's 18 units (cv_jax.paper_units)")
_SEEDS = flags.DEFINE_list("seed_images", [], "accentuation: seed image files (comma-separated)")


def main(argv: list[str]) -> None:
  """Render the configured units and write the files."""
  from cv_jax import paper_units
  from cv_jax.featvis import render
  from cv_jax.featvis.outputs import write_outputs
  if len(argv) > 1:
    raise cli_support.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cfg = cli_support.config_value(_CONFIG)
  names = (list(paper_units.PAPER_UNITS) if _PAPER.value
           else [s.strip() for s in cfg.units.split(",") if s.strip()])
  if not names:
    raise cli_support.UsageError("no units: give --config.units=mixed4a/pool:42,... or --paper_units")
  method = cfg.get("method", "fourier")
  if method == "accentuation" and not _SEEDS.value:
    raise cli_support.UsageError("the accentuation preset needs seed images: "
                                 "--seed_images=a.jpg,b.jpg")
  if _SEEDS.value and method != "accentuation":
    raise cli_support.UsageError("--seed_images is used by the accentuation preset only")
  cli_support.check_files(_SEEDS.value, "seed image")
  generator = None
  if method == "dgn_am":
    from cv_jax.weights.generator import load_generator
    generator = load_generator(cfg.get("generator") or None)
  model = cli_support.load_model(_MODEL.value, _WEIGHTS.value)
  out = render(model, names, cfg, progress=True, seed_images=_SEEDS.value or None,
               generator=generator)
  write_outputs(out, cfg.out)
  for n, a in zip(out["units"], out["activation"]):
    print(f"{n}: activation per image {np.round(a, 2).tolist()}")
  print(f"wrote {cfg.out}")


if __name__ == "__main__":
  cli_support.run("featvis", main)
