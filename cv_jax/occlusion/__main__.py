"""`cv-jax occlusion` (or `python -m cv_jax.occlusion`): occlusion maps of units for images.

    cv-jax occlusion --image=query.jpg --units=mixed4a/3x3:10,mixed4a_pre_relu:257 \
        --weights=bvlc_googlenet_blobs.npz --output=out/ [--config=configs/occlusion.py:demo]

For each image writes `<output>/<stem>_occlusion.npz` and a heat map per unit
(`cv_jax.occlusion.job.write_maps`). Flags given on the command line override the preset
(default zimmermann2021: 90 px, stride 2).
"""

from __future__ import annotations

from absl import flags

from cv_jax import cli_support

_CONFIG = cli_support.define_config_flag("occlusion", "zimmermann2021")
_IMAGE = flags.DEFINE_list("image", None, "Image file(s), comma-separated (also positional arguments).")
_UNITS = flags.DEFINE_list("units", None, "Units: 'block/branch:i' (e.g. mixed4a/3x3:10) or 'layer:channel'.")
_OUTPUT = flags.DEFINE_string("output", "occlusion_out", "Output directory.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Weights file or cv_jax checkpoint.")
_FIGURES = flags.DEFINE_boolean("figures", True, "Write a heat-map PNG per unit.")
# Preset fields that a flag of the same name overrides.
_OVERRIDES = {
    "model": flags.DEFINE_string("model", None, "Model name (default from the preset: googlenet_bvlc)."),
    "size": flags.DEFINE_string("size", None, "Occluder side: pixels (90) or fraction of the image (0.4)."),
    "stride": flags.DEFINE_integer("stride", None, "Occluder stride in pixels."),
    "fill": flags.DEFINE_string("fill", None, "mean | blur | grey level (0.5) | r,g,b."),
    "chunk": flags.DEFINE_integer("chunk", None, "Positions per forward pass (0: automatic)."),
}


def main(argv: list[str]) -> None:
  """Scan the images and write the maps."""
  from cv_jax.occlusion.config import parse_fill, parse_size
  from cv_jax.occlusion.job import write_maps
  cfg = cli_support.config_value(_CONFIG)
  for name, holder in _OVERRIDES.items():
    if holder.value is not None:
      setattr(cfg, name, holder.value)
  parse_fill(cfg.fill), parse_size(cfg.size)  # bad values fail before the model loads
  paths = list(_IMAGE.value or []) + list(argv[1:])
  cli_support.check_files(paths)
  model = cli_support.load_model(cfg.model, _WEIGHTS.value)
  write_maps(model, paths, _UNITS.value or [], _OUTPUT.value, cfg, _FIGURES.value)


if __name__ == "__main__":
  cli_support.run("occlusion", main)
