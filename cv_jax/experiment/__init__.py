"""The causal-understanding experiment: trials, tasks, baselines, agreement, report, pipeline.

    python -m cv_jax.experiment --config=configs/experiment.py:demo

See docs/experiment.md and docs/experiment_schema.md.
"""

from cv_jax.experiment import baselines, stats
from cv_jax.experiment.baselines import (BASELINES, DeepGazeIIE, SaliencyModel,
                                         SpectralResidualSaliency, baseline_values,
                                         get_saliency_model, score)
from cv_jax.experiment.stats import accuracy, cohen_kappa, kappa_table

__all__ = ["baselines", "stats", "BASELINES", "DeepGazeIIE", "SaliencyModel",
           "SpectralResidualSaliency", "baseline_values", "get_saliency_model", "score",
           "accuracy", "cohen_kappa", "kappa_table"]
