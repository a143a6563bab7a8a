"""Tree assertions for equivalence tests: chex's tree checks with the relative L2 error.

`assert_trees_rel_close(actual, expected, tol)` fails, naming each offending leaf's path, unless
both trees have the same structure and every leaf pair has ||a - b|| / ||b|| <= tol (float64).
The relative L2 error (not an elementwise rtol) is the metric the equivalence tests state their
1e-5 tolerances in: it is insensitive to the many near-zero activations a ReLU network has.
"""

from __future__ import annotations

from typing import Any

import chex
import numpy as np


def rel_err(a, b) -> float:
  """Relative L2 error ||a - b|| / ||b|| (float64)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def assert_trees_rel_close(actual: Any, expected: Any, tol: float) -> None:
  """chex tree assertion: same structure, every leaf within relative L2 error `tol`."""
  def close(a, b) -> bool:
    return np.shape(a) == np.shape(b) and rel_err(a, b) <= tol

  def message(a, b) -> str:
    if np.shape(a) != np.shape(b):
      return f"shape {np.shape(a)} != {np.shape(b)}"
    return f"relative L2 error {rel_err(a, b):.3g} > {tol:g}"

  chex.assert_trees_all_equal_comparator(close, message, actual, expected)
