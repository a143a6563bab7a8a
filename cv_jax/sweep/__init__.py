"""Dataset sweep (top-k / bottom-k images per channel) and the paper's exemplar selection.

    from cv_jax import models, sweep
    model = models.load("googlenet_bvlc", "bvlc_googlenet_blobs.npz")
    res = sweep.run(model, "folder:/data/imagenet/train", k=200, workdir="runs/sweep")
    ex = sweep.select_exemplars(res.top_idx["mixed4a_pre_relu"][476], seed=476 + 1)

`python -m cv_jax.sweep --config=configs/sweep.py:demo` runs it from the command line.
"""

from cv_jax.sweep.ranking import DEFAULT_LAYERS, SweepResult, resolve_layers, run
from cv_jax.sweep.exemplars import select_exemplars

__all__ = ["run", "SweepResult", "select_exemplars", "resolve_layers", "DEFAULT_LAYERS"]
