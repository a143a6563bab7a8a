"""Occlusion presets for `python -m cv_jax.occlusion --config=configs/occlusion.py:NAME`.

NAME is zimmermann2021 (default: 90 px, stride 2, mean fill) or demo (stride 8).
"""

from cv_jax.occlusion.config import get_config as _get


def get_config(arg: str | None = None):
  """The preset named `arg` (default zimmermann2021)."""
  return _get(arg or "zimmermann2021")
