"""Progress of long jobs: a status line before a step that cannot show progress (a compilation),
and progress bars (tqdm) that count the work as it moves. Both write to stderr."""

from __future__ import annotations

import sys
from typing import Iterable


def status(text: str) -> None:
  """Print `text` as one line on stderr now (through tqdm, so open bars are not broken)."""
  from tqdm.auto import tqdm
  tqdm.write(text, file=sys.stderr)
  sys.stderr.flush()


def bar(iterable: Iterable | None = None, desc: str = "", *, total: int | None = None,
        unit: str = "item", enabled: bool = True, **kwargs):
  """A tqdm bar over `iterable` (or a manual one, `bar.update(n)`); disabled when not `enabled`."""
  from tqdm.auto import tqdm
  return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled,
              dynamic_ncols=True, **kwargs)
