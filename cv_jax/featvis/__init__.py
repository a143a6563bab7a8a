"""Feature visualisation by optimisation (Olah et al. 2017; Lucid/Lucent recipes) in JAX.

    from cv_jax import models, featvis
    model = models.load("googlenet_bvlc", weights=...)
    out = featvis.render(model, ["mixed4a/pool:32"], featvis.get_config("lucid"))
    out["images"]  # (n_units, batch, H, W, 3) in [0, 1]
"""

from cv_jax.featvis import objectives, param, transform
from cv_jax.featvis.config import PRESETS, get_config
from cv_jax.featvis.objectives import Objective, as_objective
from cv_jax.featvis.optimize import Engine, get_engine, parse_units, render

__all__ = ["objectives", "param", "transform", "PRESETS", "get_config", "Objective",
           "as_objective", "Engine", "get_engine", "parse_units", "render"]
