"""`cv-jax human block --db=URL --ids=FILE`: block participant ids (one per line), e.g. the
participants of earlier studies; they get "not eligible" at the start page."""

from __future__ import annotations

from absl import flags

from cv_jax.human import store, study
from cv_jax.human.commands.common import fail, need, one_line_errors

_DB = flags.DEFINE_string("db", "human.db", "database: a SQLite file path or a URL")
_IDS = flags.DEFINE_string("ids", None, "text file with one participant id per line")


@one_line_errors("block")
def main(argv: list[str]) -> None:
  """absl main of `cv-jax human block`."""
  if len(argv) > 1:
    fail("block", f"unexpected arguments {argv[1:]}")
  need("block", ids=_IDS.value)
  with open(_IDS.value) as f:
    ids = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  n = study.block(store.make_engine(_DB.value), ids)
  print(f"blocked {n} new ids ({len(ids) - n} already blocked)")
