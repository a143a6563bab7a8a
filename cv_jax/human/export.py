"""Export a study database: every table read in ONE transaction, written through
`export_format.write_export` (folder or zip; human_experiment_spec §3.8).

Because the rows come from one snapshot (SQLite: one read transaction in WAL mode; PostgreSQL:
REPEATABLE READ), the manifest's counts always match the tables even while the server runs.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import sqlalchemy as sa

from cv_jax.human import export_format, store

_TABLES = {"participants": store.participant, "sessions": store.session,
           "responses": store.response, "events": store.event,
           "practice_draws": store.practice_draw, "anomalies": store.anomaly}


def read_tables(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
  """Every exported table's rows (as dicts), ordered by id, from one connection."""
  out = {}
  for name, table in _TABLES.items():
    order = table.c.id if "id" in table.c else next(iter(table.primary_key.columns))
    out[name] = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(order))]
  return out


def export(engine: sa.Engine, out: str | os.PathLike) -> pathlib.Path:
  """Write the export of the study in `engine` to `out` (a folder, or a file ending in .zip)."""
  with store.read_tx(engine) as conn:
    row = store.get_study(conn)
    if row is None:
      raise ValueError("the database holds no study; run `cv-jax human init` first")
    tables = read_tables(conn)
    sha = row.experiment_sha256
    study_id = row.id
  return export_format.write_export(out, tables, experiment_sha256=sha, source="server",
                                    extra={"study_id": study_id,
                                           "db_schema_version": store.SCHEMA_VERSION})
