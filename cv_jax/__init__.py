"""cv_jax: feature visualisations and the causal-understanding study of CNN units, in JAX."""

__version__ = "0.1.0"
