"""The study database: tables (human_experiment_spec §3.5), engines and transactions.

SQLAlchemy Core on SQLite (the default, a single file) or PostgreSQL (psycopg 3).

* SQLite: every connection sets `journal_mode=WAL`, `synchronous=FULL` (WAL + NORMAL can lose
  committed transactions on power loss), `busy_timeout` and `foreign_keys=ON`; writes run in
  `BEGIN IMMEDIATE` transactions, so two writers never deadlock on a lock upgrade.
* PostgreSQL: slot claims use `SELECT ... FOR UPDATE SKIP LOCKED` (see `assign.py`); exports
  read in one REPEATABLE READ transaction.

All times are integer milliseconds since the Unix epoch (UTC). `response` and `event` are
append-only: nothing here updates or deletes their rows. Imports no JAX.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa

SCHEMA_VERSION = 1
"""Version of the table layout below (stored in `study.schema_version`)."""

metadata = sa.MetaData()
_ms = sa.BigInteger

study = sa.Table(
    "study", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("experiment_sha256", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("settings_json", sa.Text, nullable=False),
    sa.Column("created_at", _ms, nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False, default=False),
)

slot = sa.Table(
    "slot", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey("study.id"), nullable=False),
    sa.Column("task_id", sa.String(200), nullable=False),
    sa.Column("condition", sa.String(32), nullable=False),
    sa.Column("task_index", sa.Integer, nullable=False),
    sa.Column("image_set", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open|leased|completed|retired
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_session_id", sa.Integer, nullable=True),
    sa.Column("lease_expires_at", _ms, nullable=True),
    sa.UniqueConstraint("study_id", "task_id"),
    sa.Index("ix_slot_claim", "study_id", "condition", "status", "task_index"),
)

participant = sa.Table(
    "participant", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey("study.id"), nullable=False),
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # prolific|mturk|link|sim
    sa.Column("ids_json", sa.Text, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", _ms, nullable=False),
    sa.UniqueConstraint("study_id", "external_id"),
)

session = sa.Table(
    "session", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("participant_id", sa.ForeignKey("participant.id"), nullable=False, unique=True),
    sa.Column("slot_id", sa.ForeignKey("slot.id"), nullable=False),
    sa.Column("condition", sa.String(32), nullable=False),
    sa.Column("task_id", sa.String(200), nullable=False),
    # consent|instructions|practice|main|feedback|complete|abandoned
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", _ms, nullable=False),
    sa.Column("completed_at", _ms, nullable=True),
    sa.Column("client_json", sa.Text, nullable=True),
    sa.Column("completion_code", sa.String(64), nullable=True),
    sa.Column("exclusion_json", sa.Text, nullable=True),
    sa.Column("passed", sa.Boolean, nullable=True),
)

response = sa.Table(
    "response", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.ForeignKey("session.id"), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),  # practice|main
    sa.Column("attempt", sa.Integer, nullable=False),  # practice block (1..); main: 0
    sa.Column("entry_index", sa.Integer, nullable=False),
    sa.Column("trial_id", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("max_side", sa.String(8), nullable=False),
    sa.Column("shown_left", sa.String(64), nullable=False),
    sa.Column("shown_right", sa.String(64), nullable=False),
    sa.Column("chosen_side", sa.String(8), nullable=False),
    sa.Column("choice", sa.String(8), nullable=False),  # max|min
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("confidence", sa.Integer, nullable=False),  # 1..3, the label shown
    sa.Column("button_index", sa.Integer, nullable=False),  # 0..5, left to right
    sa.Column("rt_ms", sa.Float, nullable=False),
    sa.Column("t_shown", sa.Float, nullable=True),
    sa.Column("t_choice", sa.Float, nullable=True),
    sa.Column("t_continue", sa.Float, nullable=True),
    sa.Column("page_load_id", sa.String(64), nullable=True),
    sa.Column("t_server", _ms, nullable=False),
    sa.Column("raw_json", sa.Text, nullable=False),
    sa.UniqueConstraint("session_id", "phase", "attempt", "entry_index"),
)

event = sa.Table(
    "event", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.ForeignKey("session.id"), nullable=False),
    sa.Column("page_load_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("t_client", sa.Float, nullable=True),
    sa.Column("t_server", _ms, nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.UniqueConstraint("session_id", "page_load_id", "seq"),
)

practice_draw = sa.Table(
    "practice_draw", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.ForeignKey("session.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("entries_json", sa.Text, nullable=False),
    sa.UniqueConstraint("session_id", "attempt"),
)

anomaly = sa.Table(
    "anomaly", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.ForeignKey("session.id"), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("t_server", _ms, nullable=False),
)

blocklist = sa.Table(
    "blocklist", metadata,
    sa.Column("study_id", sa.ForeignKey("study.id"), primary_key=True),
    sa.Column("external_id", sa.String(200), primary_key=True),
)

TABLES = ("study", "slot", "participant", "session", "response", "event", "practice_draw",
          "anomaly", "blocklist")


def now_ms() -> int:
  """The server clock, integer ms since the epoch."""
  return int(time.time() * 1000)


def normalize_url(db: str) -> str:
  """A database URL from a CLI value: a URL, or a file path meaning SQLite."""
  if "://" in db:
    if db.startswith(("postgresql://", "postgres://")):
      return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db
  return f"sqlite:///{db}"


def is_sqlite(engine: sa.Engine) -> bool:
  """Whether the engine is SQLite."""
  return engine.dialect.name == "sqlite"


def make_engine(db_url: str, *, pool_size: int = 8) -> sa.Engine:
  """An engine for `db_url` with the durability settings of the module docstring."""
  url = normalize_url(db_url)
  if url.startswith("sqlite"):
    if url in ("sqlite://", "sqlite:///:memory:"):
      raise ValueError("an in-memory SQLite database loses everything; give a file path")
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                              pool_size=pool_size, max_overflow=32, pool_timeout=60)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
      dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
      cur = dbapi_conn.cursor()
      cur.execute("PRAGMA journal_mode=WAL")
      cur.execute("PRAGMA synchronous=FULL")
      cur.execute("PRAGMA busy_timeout=30000")
      cur.execute("PRAGMA foreign_keys=ON")
      cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
      mode = "IMMEDIATE" if conn.get_execution_options().get("cvjax_write") else "DEFERRED"
      conn.exec_driver_sql(f"BEGIN {mode}")

    # One writer at a time per process: threads queue on a lock instead of SQLite's busy
    # handler (which sleeps in steps of up to 100 ms); other processes still wait on SQLite.
    _WRITE_LOCKS[id(engine)] = threading.Lock()
    return engine
  return sa.create_engine(url, pool_size=pool_size, max_overflow=32, pool_timeout=60,
                          pool_pre_ping=True)


_WRITE_LOCKS: dict[int, threading.Lock] = {}


@contextlib.contextmanager
def write_tx(engine: sa.Engine) -> Iterator[sa.Connection]:
  """A write transaction (SQLite: BEGIN IMMEDIATE, one writer thread per process at a time);
  commits on success, rolls back on error."""
  lock = _WRITE_LOCKS.get(id(engine)) or contextlib.nullcontext()
  with lock, engine.connect().execution_options(cvjax_write=True) as conn, conn.begin():
    yield conn


@contextlib.contextmanager
def read_tx(engine: sa.Engine) -> Iterator[sa.Connection]:
  """A read-only transaction seeing one consistent snapshot (PostgreSQL: REPEATABLE READ)."""
  with engine.connect() as conn:
    if not is_sqlite(engine):
      conn = conn.execution_options(isolation_level="REPEATABLE READ")
    with conn.begin():
      yield conn


def is_transient(e: BaseException) -> bool:
  """Whether a database error is worth retrying (SQLite busy, serialization, deadlock, unique
  races)."""
  return isinstance(e, sa.exc.IntegrityError) or (
      isinstance(e, sa.exc.OperationalError) and ("locked" in str(e) or "serializ" in str(e)
                                                  or "deadlock" in str(e)))


def retrying(fn, *, tries: int = 8):
  """Run `fn()` again on transient database errors (`is_transient`)."""
  for i in range(tries):
    try:
      return fn()
    except (sa.exc.OperationalError, sa.exc.IntegrityError) as e:
      if not is_transient(e) or i == tries - 1:
        raise
      time.sleep(0.01 * (2 ** i))
  raise AssertionError("unreachable")


def create(engine: sa.Engine) -> None:
  """Create the tables (no-op for existing ones)."""
  metadata.create_all(engine)


def get_study(conn: sa.Connection) -> sa.Row | None:
  """The study row (one study per database), or None before `init`."""
  return conn.execute(sa.select(study).order_by(study.c.id).limit(1)).first()
