"""Helpers shared by the `cv-jax human` subcommands: one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import sqlalchemy as sa

from cv_jax.human import stimuli
from cv_jax.human.app import StudyNotReady


def fail(command: str, message: str) -> None:
  """Print `cv-jax human <command>: error: <message>` on stderr and exit 1."""
  print(f"cv-jax human {command}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def one_line_errors(command: str) -> Callable:
  """Decorator: the known failures of a subcommand become one line on stderr and exit 1."""
  def wrap(main: Callable) -> Callable:
    @functools.wraps(main)
    def run(argv):
      try:
        return main(argv)
      except (ValueError, stimuli.ExperimentError, StudyNotReady, OSError) as e:
        fail(command, str(e).splitlines()[0] if str(e) else type(e).__name__)
      except sa.exc.SQLAlchemyError as e:
        fail(command, f"database error: {str(e.orig if hasattr(e, 'orig') else e).splitlines()[0]}"
                      " (check --db)")
    return run
  return wrap


def need(command: str, **flags_: object) -> None:
  """Fail for the first missing required flag."""
  for name, value in flags_.items():
    if value in (None, ""):
      fail(command, f"--{name} is required")
