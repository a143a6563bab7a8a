"""Group commit: one writer thread per server process runs the write requests in batches.

With SQLite (`synchronous=FULL`) and PostgreSQL (`fsync=on`) every commit waits for an fsync
(about 0.4 ms on an idle SSD, several ms on a busy disk), and SQLite takes one writer at a time.
One transaction per request therefore caps a server at about 1/fsync answers per second and
makes requests queue behind each other's fsyncs. `GroupWriter` instead takes every write
request waiting at that moment (up to `max_batch`), runs each in its own SAVEPOINT inside one
transaction (SQLite: `BEGIN IMMEDIATE`), and commits once:

* a request that fails rolls back to its savepoint only (the others keep their writes; on
  PostgreSQL this also clears the error state of the transaction); one whose exception
  `keeps(e)` says to keep (an expiry found while refusing) releases it instead;
* every caller gets its result only after the COMMIT returned, so nothing is acknowledged
  that is not durable; if the COMMIT (or BEGIN) fails, every request of the batch gets the
  error and nothing of the batch is stored (callers retry transient errors; answers are
  idempotent).

The durability and exactly-once rules are those of one transaction per request; only the
number of fsyncs changes. Several server processes (PostgreSQL) each run their own writer.
Imports no JAX.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import queue
import threading
from typing import Any, Callable

import sqlalchemy as sa

from cv_jax.human import store

Job = Callable[[sa.Connection], Any]


class GroupWriter:
  """A writer thread committing batches of write jobs (see the module docstring).

  Args:
    engine: an engine from `store.make_engine`.
    keeps: exceptions of a job whose writes are kept (savepoint released) before it is raised
      to the caller; others roll the job's savepoint back.
    max_batch: the most jobs in one transaction.
  """

  def __init__(self, engine: sa.Engine, *, keeps: Callable[[BaseException], bool] = lambda e:
               False, max_batch: int = 64):
    self.engine, self.keeps, self.max_batch = engine, keeps, max_batch
    self._q: queue.SimpleQueue = queue.SimpleQueue()
    self._lock = threading.Lock()
    self._thread: threading.Thread | None = None
    self.batches = self.jobs = 0  # counters (tests, profiling)

  def submit(self, job: Job) -> cf.Future:
    """Queue `job(conn)`; the future resolves after the batch's COMMIT."""
    with self._lock:
      if self._thread is None or not self._thread.is_alive():
        self._thread = threading.Thread(target=self._loop, name="cvjax-writer", daemon=True)
        self._thread.start()
    fut: cf.Future = cf.Future()
    self._q.put((job, fut))
    return fut

  def run(self, job: Job) -> Any:
    """Run `job(conn)` in the next batch and return its result (or raise its exception),
    retrying transient database errors (`store.is_transient`)."""
    return store.retrying(lambda: self.submit(job).result())

  async def arun(self, job: Job, *, tries: int = 8) -> Any:
    """`run` for async callers: awaits the batch without blocking the event loop."""
    for i in range(tries):
      try:
        return await asyncio.wrap_future(self.submit(job))
      except (sa.exc.OperationalError, sa.exc.IntegrityError) as e:
        if not store.is_transient(e) or i == tries - 1:
          raise
        await asyncio.sleep(0.01 * (2 ** i))
    raise AssertionError("unreachable")

  def _loop(self) -> None:
    while True:
      batch = [self._q.get()]
      while len(batch) < self.max_batch:
        try:
          batch.append(self._q.get_nowait())
        except queue.Empty:
          break
      self._run(batch)

  def _run(self, batch: list[tuple[Job, cf.Future]]) -> None:
    live = [(job, fut) for job, fut in batch if fut.set_running_or_notify_cancel()]
    outcomes: list[tuple[bool, Any]] = []
    try:
      with store.write_tx(self.engine) as conn:
        for job, _ in live:
          # Plain SAVEPOINT statements: SQLAlchemy's begin_nested() cost more CPU than the
          # job's own statements; the job never sees or ends this savepoint.
          conn.exec_driver_sql("SAVEPOINT cvjax_job")
          try:
            value = job(conn)
          except Exception as e:  # noqa: BLE001 - handed to the job's caller
            if not self.keeps(e):
              conn.exec_driver_sql("ROLLBACK TO SAVEPOINT cvjax_job")
            conn.exec_driver_sql("RELEASE SAVEPOINT cvjax_job")
            outcomes.append((False, e))
          else:
            conn.exec_driver_sql("RELEASE SAVEPOINT cvjax_job")
            outcomes.append((True, value))
    except Exception as e:  # noqa: BLE001 - BEGIN or COMMIT failed: nothing of the batch stored
      for _, fut in live:
        fut.set_exception(e)
      return
    self.batches += 1
    self.jobs += len(live)
    for (_, fut), (ok, value) in zip(live, outcomes):
      if ok:
        fut.set_result(value)
      else:
        fut.set_exception(value)
