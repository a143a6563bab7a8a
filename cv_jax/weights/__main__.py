"""`cv-jax convert` (or `python -m cv_jax.weights`): published weights -> a cv_jax checkpoint.

    cv-jax convert --model=googlenet_bvlc --input=bvlc_googlenet.caffemodel --output=ckpt/

Reads any format `cv_jax.models.load` accepts (.caffemodel, Caffe-blob .npz, Lucent .pth,
TF .pb, a cv_jax checkpoint), validates it against the model and writes an orbax checkpoint.
Prints one summary line; on bad input prints one error line and exits with status 1.
"""

from __future__ import annotations

from absl import flags

from cv_jax import cli_support
from cv_jax.models.spec import SPECS

_MODEL = flags.DEFINE_enum("model", None, list(SPECS), "Model the weights belong to.")
_INPUT = flags.DEFINE_string("input", None, "Weights file (or cv_jax checkpoint directory) to read.")
_OUTPUT = flags.DEFINE_string("output", None, "Checkpoint directory to create (must not exist).")
_AUX = flags.DEFINE_bool("aux_heads", False, "Also convert the auxiliary classifier heads.")
flags.mark_flags_as_required(["model", "input", "output"])


def main(argv: list[str]) -> None:
  """Run `cv_jax.weights.convert.convert` with the flags and print its summary line."""
  from cv_jax.weights.convert import convert
  if len(argv) > 1:
    raise cli_support.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  print(convert(_MODEL.value, _INPUT.value, _OUTPUT.value, _AUX.value))


if __name__ == "__main__":
  cli_support.run("convert", main)
