"""`WeightsError`: the one error every weights reader, mapping and check raises."""

from __future__ import annotations


class WeightsError(ValueError):
  """A weights file cannot be turned into a valid parameter set (nothing was loaded)."""
