"""Weights: validation, per-format mappings, reading by suffix, orbax checkpoints, cache, download.

    from cv_jax import weights
    params = weights.read_params("bvlc_googlenet.caffemodel", models.SPECS["googlenet_bvlc"])

- `validation`: parameter shapes of a `NetSpec`, `validate`, `init_params`; `errors.WeightsError`.
- `formats/`: raw readers of .caffemodel, .pth/.pt, .pb (no torch, caffe or TF needed).
- `mappings`: each format's names and layouts -> the `{layer: {"kernel", "bias"}}` pytree.
- `reading.read_params`: any supported file, by suffix; `checkpoint`: the project's orbax format.
- `cache.resolve`: explicit path, `$CV_JAX_HOME`, or a checked download of the official file.
- `convert.convert` (`cv-jax convert`): any supported file -> a checkpoint (import it from
  `cv_jax.weights.convert`; it needs `cv_jax.models`, which needs this package).

See docs/convert.md and docs/models.md.
"""

from cv_jax.weights.cache import LOCAL_NAMES, OFFICIAL, cache_dir, resolve
from cv_jax.weights.checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from cv_jax.weights.errors import WeightsError
from cv_jax.weights.mappings import (from_caffe_blobs, from_flat_arrays, from_tf_consts,
                                     from_torch_state_dict)
from cv_jax.weights.reading import FORMATS, read_params
from cv_jax.weights.validation import init_params, param_shapes, validate

__all__ = ["LOCAL_NAMES", "OFFICIAL", "cache_dir", "resolve", "CHECKPOINT_VERSION",
           "load_checkpoint", "save_checkpoint", "WeightsError", "from_caffe_blobs",
           "from_flat_arrays", "from_tf_consts", "from_torch_state_dict", "FORMATS",
           "read_params", "init_params", "param_shapes", "validate"]
