"""Image sources and the paper's preprocessing."""

from cv_jax.data.preprocess import load_image, preprocess_pil

__all__ = ["load_image", "preprocess_pil"]
