"""`cv-jax convert` (or `python -m cv_jax.weights`): published weights -> a cv_jax checkpoint.

    cv-jax convert --model=googlenet_bvlc --input=bvlc_googlenet.caffemodel --output=ckpt/

Reads any format `cv_jax.models.load` accepts (.caffemodel, Caffe-blob .npz, Lucent .pth,
TF .pb, a cv_jax checkpoint), validates it against the model and writes an orbax checkpoint.
Prints one summary line; on bad input prints one error line and exits with status 1.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from cv_jax.models.spec import SPECS

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", None, list(SPECS), "Model the weights belong to.")
flags.DEFINE_string("input", None, "Weights file (or cv_jax checkpoint directory) to read.")
flags.DEFINE_string("output", None, "Checkpoint directory to create (must not exist).")
flags.DEFINE_bool("aux_heads", False, "Also convert the auxiliary classifier heads.")
flags.mark_flags_as_required(["model", "input", "output"])


def main(argv: list[str]) -> int:
  """absl entry point: run `cv_jax.weights.convert.convert` with the flags."""
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  from cv_jax.weights.convert import convert
  from cv_jax.weights.errors import WeightsError
  try:
    print(convert(FLAGS.model, FLAGS.input, FLAGS.output, FLAGS.aux_heads))
  except WeightsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except OSError as e:
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    return 1
  return 0


def run() -> None:
  """Console entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
