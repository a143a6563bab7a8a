"""Experiment presets for `cv-jax experiment --config=configs/experiment.py:NAME` from a checkout.

NAME is zimmermann2021, demo (the default), tiny, or a 2-AFC preset (borowski2021,
exemplar_2afc_demo, exemplar_2afc_tiny); the presets live in the installed package,
`cv_jax.experiment.config`, which is also the command's default.
"""

from cv_jax.experiment.config import get_config as _get


def get_config(arg: str | None = None):
  """The preset named `arg` (default demo)."""
  return _get(arg)
