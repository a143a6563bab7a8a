"""Models: InceptionV1 (Lucid's inception5h) and BVLC GoogLeNet in Flax NNX.

    model = cv_jax.models.load("googlenet_bvlc", weights="bvlc_googlenet_blobs.npz")
    acts = model(images, layers=("mixed4a_pre_relu", "softmax2"))
"""

from cv_jax.models.data_parallel import data_parallel
from cv_jax.models.model import Network, Unit, available, load
from cv_jax.models.spec import BRANCHES, SPECS, NetSpec
from cv_jax.weights import WeightsError, init_params, load_checkpoint, save_checkpoint

__all__ = ["data_parallel", "Network", "Unit", "available", "load", "BRANCHES", "SPECS", "NetSpec", "WeightsError",
           "save_checkpoint", "load_checkpoint", "init_params"]
