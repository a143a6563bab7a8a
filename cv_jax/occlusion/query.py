"""Loading the query image of an occlusion job, with errors that name the file."""

from __future__ import annotations

import os

import numpy as np

from cv_jax.data import load_image


def load_query(path: str | os.PathLike, resize: int = 256, crop: int = 224) -> np.ndarray:
  """`cv_jax.data.load_image` with a ValueError naming the file when it is missing or corrupt."""
  if not os.path.isfile(path):
    raise ValueError(f"image not found: {path}")
  try:
    return load_image(path, resize, crop)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e
