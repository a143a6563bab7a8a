"""Sweep presets for `cv-jax sweep --config=configs/sweep.py:NAME` from a checkout.

NAME is paper, demo (the command's default) or test; the presets live in the installed package,
`cv_jax.sweep.config`.
"""

from cv_jax.sweep.config import get_config as _get


def get_config(arg: str | None = None):
  """The preset named `arg` (default paper, as `cv_jax.sweep.config.get_config`)."""
  return _get(arg)
