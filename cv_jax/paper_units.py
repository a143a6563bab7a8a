"""The paper's units (Zimmermann et al. 2021), addressed by branch.

The paper's units are concat indices of inceptionv1's `mixedXY_pre_relu` (3x3 and pool branches
of the 9 blocks; catch units j, t, z). Converted to (block, branch, index within branch) with
inceptionv1's branch offsets (concat order 1x1, 3x3, 5x5, pool), they map onto any GoogLeNet variant
with `models.Unit.parse(s, model)`; on BVLC GoogLeNet the within-branch index is kept and the
concat index shifts where BVLC's branch sizes differ (mixed4a 3x3 has 208 channels, not 204).
"""

from __future__ import annotations

from cv_jax import models

# (block, branch, inceptionv1 concat index) of the paper's units.
PAPER_UNITS_INCEPTIONV1 = (
    ("mixed3a", "3x3", 189), ("mixed3a", "pool", 227),
    ("mixed3b", "3x3", 178), ("mixed3b", "pool", 430),
    ("mixed4a", "3x3", 257), ("mixed4a", "pool", 486),
    ("mixed4b", "3x3", 339), ("mixed4b", "pool", 491),
    ("mixed4c", "3x3", 247), ("mixed4c", "pool", 496),
    ("mixed4d", "3x3", 342), ("mixed4d", "pool", 483),
    ("mixed4e", "3x3", 524), ("mixed4e", "pool", 816),
    ("mixed5a", "3x3", 278), ("mixed5a", "pool", 743),
    ("mixed5b", "3x3", 684), ("mixed5b", "pool", 1007),
)
# Catch units j, t, z.
CATCH_UNITS_INCEPTIONV1 = (("mixed4e", "pool", 783), ("mixed4c", "pool", 484),
                           ("mixed5a", "3x3", 557))

# Practice units g, o, d, c, e, f, h, k, n, q with their image sets (CU
# layer_folder_mapping_instruction_practice_catch.csv, 7_practice_trials_...ipynb cell 5).
PRACTICE_UNITS_INCEPTIONV1 = (
    ("mixed4e", "1x1", 6, 18), ("mixed4a", "pool", 505, 1), ("mixed4e", "pool", 809, 0),
    ("mixed4c", "pool", 449, 5), ("mixed4b", "pool", 465, 2), ("mixed4c", "1x1", 59, 12),
    ("mixed4e", "1x1", 83, 0), ("mixed3a", "1x1", 43, 9), ("mixed3b", "pool", 472, 3),
    ("mixed4b", "1x1", 50, 5),
)
# Image set of each catch unit (CU create_task_structure_json.py l.89-93).
CATCH_IMAGE_SETS = {"j": 0, "t": 1, "z": 14}


def _to_branch(block: str, branch: str, concat: int) -> str:
  """inceptionv1 concat index -> "block/branch:index-within-branch" (branch order 1x1, 3x3, 5x5,
  pool)."""
  spec = models.SPECS["inceptionv1"].blocks[block]
  start = spec.offsets()[branch]
  idx = concat - start
  if not 0 <= idx < spec.branch_sizes[models.BRANCHES.index(branch)]:
    raise AssertionError(f"{block}:{concat} is not in the {branch} branch")
  return f"{block}/{branch}:{idx}"


PAPER_UNITS = tuple(_to_branch(*u) for u in PAPER_UNITS_INCEPTIONV1)
"""The 18 paper units as "block/branch:index" strings (layer order, 3x3 before pool)."""

CATCH_UNITS = dict(zip("jtz", (_to_branch(*u) for u in CATCH_UNITS_INCEPTIONV1)))
"""Catch units by their letter, as "block/branch:index" strings."""

PRACTICE_UNITS = tuple((_to_branch(*u[:3]), u[3]) for u in PRACTICE_UNITS_INCEPTIONV1)
"""Practice units as ("block/branch:index", image set)."""


def paper_units(model) -> list[models.Unit]:
  """The 18 paper units on `model` (validated: each index must fall inside its branch)."""
  return [models.Unit.parse(s, model) for s in PAPER_UNITS]


def catch_units(model) -> dict[str, models.Unit]:
  """Catch units j, t, z on `model`."""
  return {k: models.Unit.parse(s, model) for k, s in CATCH_UNITS.items()}
