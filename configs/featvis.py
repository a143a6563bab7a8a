"""Feature-visualisation presets for `python -m cv_jax.featvis --config=configs/featvis.py:NAME`.

NAME is one of zimmermann2021 (default), lucid, lucent, maco, accentuation, dgn_am; see
`cv_jax.featvis.config`.
"""

from cv_jax.featvis.config import get_config as _get


def get_config(arg: str | None = None):
  """The preset named `arg` (default zimmermann2021)."""
  return _get(arg or "zimmermann2021")
