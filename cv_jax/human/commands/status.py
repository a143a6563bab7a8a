"""`cv-jax human status --db=URL [--json]`: slots per condition x status, sessions per state,
anomalies (read from the database directly; the server need not run)."""

from __future__ import annotations

import json

from absl import flags

from cv_jax.human import store
from cv_jax.human.app import status_counts
from cv_jax.human.commands.common import fail, one_line_errors

_DB = flags.DEFINE_string("db", "human.db", "database: a SQLite file path or a URL")
_JSON = flags.DEFINE_bool("json", False, "print JSON")


@one_line_errors("status")
def main(argv: list[str]) -> None:
  """absl main of `cv-jax human status`."""
  if len(argv) > 1:
    fail("status", f"unexpected arguments {argv[1:]}")
  if "://" not in _DB.value and not __import__("os").path.exists(_DB.value):
    fail("status", f"no database file {_DB.value}; run `cv-jax human init` first")
  engine = store.make_engine(_DB.value)
  with store.read_tx(engine) as conn:
    if store.get_study(conn) is None:
      fail("status", "the database holds no study; run `cv-jax human init` first")
    counts = status_counts(conn)
  if _JSON.value:
    print(json.dumps(counts, indent=1, sort_keys=True))
    return
  states = ("open", "leased", "completed", "retired")
  print(f"{'condition':<10} " + " ".join(f"{s:>9}" for s in states))
  for c, row in sorted(counts["slots"].items()):
    print(f"{c:<10} " + " ".join(f"{row.get(s, 0):>9}" for s in states))
  print("sessions: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["sessions"].items()))
                        or "none"))
  cp = counts["completed_passed"]
  print(f"completed: passed {cp.get('true', 0)}, excluded {cp.get('false', 0)}; "
        f"participants {counts['participants']}, responses {counts['responses']}")
  print("anomalies: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["anomalies"].items()))
                         or "none"))
