"""Slots, claims and leases (human_experiment_spec §3.3).

One slot per `experiment.json` task. A claim, inside the caller's write transaction:

1. reopens slots whose lease has expired (their sessions become `abandoned`; data kept);
2. picks the condition with the fewest completed + leased slots among those with an open slot
   (optionally restricted to one condition, the paper's one-condition-per-batch mode);
3. takes that condition's open slot with the lowest task index (image sets round-robin) and
   leases it: `status = leased`, `lease_expires_at = now + lease_s`.

On PostgreSQL the slot row is taken with `FOR UPDATE SKIP LOCKED`, so concurrent claims from
several server processes never get the same slot; on SQLite the `BEGIN IMMEDIATE` write
transaction serialises claims. Imports no JAX.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from cv_jax.experiment.schema import CONDITIONS
from cv_jax.human import store

OPEN, LEASED, COMPLETED, RETIRED = "open", "leased", "completed", "retired"


def create_slots(conn: sa.Connection, study_id: int, tasks: Sequence[dict]) -> int:
  """Insert one open slot per task; return the number inserted."""
  rows = [{"study_id": study_id, "task_id": t["id"], "condition": t["condition"],
           "task_index": int(t["index"]), "image_set": int(t["image_set"]), "status": OPEN,
           "attempts": 0} for t in tasks]
  if rows:
    conn.execute(store.slot.insert(), rows)
  return len(rows)


def expire_leases(conn: sa.Connection, study_id: int, now: int) -> int:
  """Reopen slots whose lease ran out; mark their sessions abandoned. Returns the count."""
  s = store.slot
  expired = conn.execute(
      sa.select(s.c.id, s.c.lease_session_id).where(
          s.c.study_id == study_id, s.c.status == LEASED, s.c.lease_expires_at < now)
  ).all()
  for slot_id, session_id in expired:
    release(conn, slot_id, session_id)
  return len(expired)


def release(conn: sa.Connection, slot_id: int, session_id: int | None) -> None:
  """Reopen a leased slot now and mark its session `abandoned` (unless it completed)."""
  conn.execute(store.slot.update().where(store.slot.c.id == slot_id, store.slot.c.status == LEASED)
               .values(status=OPEN, lease_session_id=None, lease_expires_at=None))
  if session_id is not None:
    se = store.session
    conn.execute(se.update().where(se.c.id == session_id, se.c.state != "complete")
                 .values(state="abandoned"))


def _load(conn: sa.Connection, study_id: int) -> dict[str, int]:
  s = store.slot
  rows = conn.execute(
      sa.select(s.c.condition, sa.func.count()).where(
          s.c.study_id == study_id, s.c.status.in_([LEASED, COMPLETED])).group_by(s.c.condition)
  ).all()
  return {c: int(n) for c, n in rows}


def claim(conn: sa.Connection, study_id: int, now: int, lease_s: float,
          condition: str | None = None) -> sa.Row | None:
  """Lease an open slot (see the module docstring); None when no slot is open.

  The caller sets `lease_session_id` once the session row exists (same transaction).
  """
  expire_leases(conn, study_id, now)
  s = store.slot
  where = [s.c.study_id == study_id, s.c.status == OPEN]
  if condition is not None:
    where.append(s.c.condition == condition)
  open_conds = set(conn.execute(sa.select(s.c.condition).where(*where).distinct()).scalars())
  if not open_conds:
    return None
  load = _load(conn, study_id)
  order = sorted(open_conds, key=lambda c: (load.get(c, 0),
                                            CONDITIONS.index(c) if c in CONDITIONS else 99, c))
  pg = not store.is_sqlite(conn.engine)
  for c in order:
    q = sa.select(s).where(s.c.study_id == study_id, s.c.status == OPEN, s.c.condition == c)
    q = q.order_by(s.c.task_index, s.c.id).limit(1)
    if pg:
      q = q.with_for_update(skip_locked=True)
    row = conn.execute(q).first()
    if row is None:
      continue
    conn.execute(s.update().where(s.c.id == row.id).values(
        status=LEASED, lease_expires_at=int(now + lease_s * 1000)))
    return row
  return None


def finish(conn: sa.Connection, slot_id: int, session_id: int, passed: bool,
           max_attempts: int) -> str:
  """Close a session's lease: passed -> completed; failed -> reopened, or retired at the limit.

  Returns the slot's new status. A slot whose lease already went to another session keeps its
  status (the late session's data is kept, the slot is not touched).
  """
  s = store.slot
  row = conn.execute(sa.select(s).where(s.c.id == slot_id)).one()
  if row.status == COMPLETED or (row.lease_session_id not in (None, session_id)):
    return row.status
  if passed:
    status, attempts = COMPLETED, row.attempts
  else:
    attempts = row.attempts + 1
    status = RETIRED if attempts >= max_attempts else OPEN
  conn.execute(s.update().where(s.c.id == slot_id).values(
      status=status, attempts=attempts, lease_session_id=None, lease_expires_at=None))
  return status
