"""The paper's units (Zimmermann et al. 2021, paper_spec §1.2), addressed by branch.

The paper's units are concat indices of inceptionv1's `mixedXY_pre_relu` (3x3 and pool branches
of the 9 blocks; catch units j, t, z). Converted to (block, branch, index within branch) with
inceptionv1's branch offsets (featvis_spec §1.4), they can be mapped to any GoogLeNet variant
with `models.Unit.parse(s, model)`; on BVLC GoogLeNet the within-branch index is kept and the
concat index shifts where BVLC's branch sizes differ (mixed4a 3x3 has 208 channels, not 204).
"""

from __future__ import annotations

from cv_jax import models

# (block, branch, inceptionv1 concat index), paper_spec §1.2.
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
# Catch units j, t, z (paper_spec §1.2).
CATCH_UNITS_INCEPTIONV1 = (("mixed4e", "pool", 783), ("mixed4c", "pool", 484),
                           ("mixed5a", "3x3", 557))

# inceptionv1 branch offsets (featvis_spec §1.4): 1x1 / 3x3 / 5x5 / pool.
INCEPTIONV1_OFFSETS = {
    "mixed3a": (0, 64, 192, 224), "mixed3b": (0, 128, 320, 416), "mixed4a": (0, 192, 396, 444),
    "mixed4b": (0, 160, 384, 448), "mixed4c": (0, 128, 384, 448), "mixed4d": (0, 112, 400, 464),
    "mixed4e": (0, 256, 576, 704), "mixed5a": (0, 256, 576, 704), "mixed5b": (0, 384, 768, 896),
}
_BRANCH_POS = {"1x1": 0, "3x3": 1, "5x5": 2, "pool": 3}


def _to_branch(block: str, branch: str, concat: int) -> str:
  start = INCEPTIONV1_OFFSETS[block][_BRANCH_POS[branch]]
  idx = concat - start
  if idx < 0:
    raise AssertionError(f"{block}:{concat} is not in the {branch} branch")
  return f"{block}/{branch}:{idx}"


PAPER_UNITS = tuple(_to_branch(*u) for u in PAPER_UNITS_INCEPTIONV1)
"""The 18 paper units as "block/branch:index" strings (layer order, 3x3 before pool)."""

CATCH_UNITS = dict(zip("jtz", (_to_branch(*u) for u in CATCH_UNITS_INCEPTIONV1)))
"""Catch units by their letter, as "block/branch:index" strings."""


def paper_units(model) -> list[models.Unit]:
  """The 18 paper units on `model` (validated: each index must fall inside its branch)."""
  return [models.Unit.parse(s, model) for s in PAPER_UNITS]


def catch_units(model) -> dict[str, models.Unit]:
  """Catch units j, t, z on `model`."""
  return {k: models.Unit.parse(s, model) for k, s in CATCH_UNITS.items()}
