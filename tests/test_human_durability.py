"""Nothing lost (human_experiment_spec §3.11): 200 simulated participants over HTTP against
`cv-jax human serve --workers=2`, at most 32 at a time, with reloads, duplicate posts, requests
cancelled right after sending, reordered batches and one `kill -9` of the server mid-run
followed by a restart on the same database — on SQLite and on PostgreSQL.

Asserted: every answer a client saw acknowledged is stored exactly once with the payload it
sent; no acknowledged answer went missing at finish; no slot has two passing sessions and no
participant two sessions; every complete session has all its main answers; SQLite's
`PRAGMA integrity_check` is ok.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import random
import threading
import time

import human_util as hu
import pytest
import sqlalchemy as sa

from cv_jax.human import store
from cv_jax.human.client import Faults, Participant

N, CONCURRENT, DEADLINE_S = 200, 32, 170


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
  from cv_jax.testing import human_experiment
  root = tmp_path_factory.mktemp("durability")
  human_experiment.make(root / "exp", n_tasks=50)  # 250 slots
  return root / "exp"


@pytest.fixture(scope="module")
def postgres():
  yield from hu.postgres_cluster()


def max_hashes(exp_dir):
  """Content hashes of every trial's max image (the test knows the answers; the client not)."""
  from cv_jax.human import stimuli
  exp = stimuli.load(exp_dir)
  return {exp.path_hash[t["images"]["max"]] for t in exp.doc["trials"]}


def _policy(max_hashes, rng):
  """Mostly right answers, recognised by content hash."""

  def decide(entry, info):
    right_is_max = entry["right"].rsplit("/", 1)[1][:-4] in max_hashes
    good = rng.random() < (1.0 if entry["phase"] == "practice" else 0.85)
    right = right_is_max == good
    return (5 if right else 0), rng.uniform(700, 2500)
  return decide


def _run(exp_dir, db_url, tmp_path):
  hu.cli("human", "init", f"--experiment={exp_dir}", f"--db={db_url}")
  server = hu.Server(exp_dir, db_url, workers=2).start()
  deadline = time.time() + DEADLINE_S
  hashes = max_hashes(exp_dir)
  done = []
  lock = threading.Lock()
  killed = threading.Event()

  def one(i):
    rng = random.Random(i)
    p = Participant(server.url, f"d{i:04d}", seed=i, decide=_policy(hashes, rng),
                    faults=Faults(reload_p=0.04, duplicate_p=0.1, cancel_p=0.05, reorder=True,
                                  batch=rng.choice([1, 2, 4])),
                    deadline=deadline, retry_s=60, timeout=10)
    r = p.run()
    with lock:
      done.append(r)
    return r

  def killer():
    while len(done) < N * 0.4 and time.time() < deadline:
      time.sleep(0.05)
    server.kill9()
    killed.set()
    time.sleep(0.5)
    server.start()

  k = threading.Thread(target=killer, daemon=True)
  k.start()
  try:
    with cf.ThreadPoolExecutor(CONCURRENT) as pool:
      results = list(pool.map(one, range(N)))
    k.join(60)
  finally:
    server.stop()
  assert killed.is_set(), "the server was never killed"
  assert time.time() < deadline, "the run passed its deadline"
  return results


def _check(results, engine):
  statuses = [r.status for r in results]
  assert statuses.count("complete") >= 0.9 * N, {s: statuses.count(s) for s in set(statuses)}
  assert sum(r.reloads for r in results) > 0 and sum(r.duplicates for r in results) > 0
  assert sum(r.cancels for r in results) > 0
  assert not [r for r in results if r.lost], "acknowledged answers went missing"
  assert not [r for r in results if r.conflicts]
  with store.read_tx(engine) as conn:
    resp = [dict(x._mapping) for x in conn.execute(sa.select(
        store.response, store.participant.c.external_id).join(
        store.session, store.session.c.id == store.response.c.session_id).join(
        store.participant, store.participant.c.id == store.session.c.participant_id))]
    sessions = [dict(x._mapping) for x in conn.execute(sa.select(
        store.session, store.participant.c.external_id).join(
        store.participant, store.participant.c.id == store.session.c.participant_id))]
  stored = {}
  for r in resp:
    key = (r["external_id"], f"{r['phase']}:{r['attempt']}:{r['entry_index']}")
    assert key not in stored, f"stored twice: {key}"
    stored[key] = r
  n_acked = 0
  for res in results:
    for k, sent in res.acked.items():
      row = stored.get((res.external_id, k))
      assert row is not None, f"acknowledged but not stored: {res.external_id} {k}"
      assert row["button_index"] == sent["button_index"] and row["rt_ms"] == sent["rt_ms"]
      assert row["t_shown"] == sent["t_shown"] and row["t_choice"] == sent["t_choice"]
      n_acked += 1
  assert n_acked >= 0.9 * N * 21
  ids = [s["external_id"] for s in sessions]
  assert len(ids) == len(set(ids)), "a participant has two sessions"
  passing = [s["slot_id"] for s in sessions if s["passed"]]
  assert len(passing) == len(set(passing)), "a slot has two passing sessions"
  for s in sessions:
    if s["state"] == "complete":
      n_main = sum(1 for r in resp if r["session_id"] == s["id"] and r["phase"] == "main")
      assert n_main == 21, (s["id"], n_main)
      assert json.loads(s["exclusion_json"])
  completed = {r.external_id for r in results if r.status == "complete"}
  assert completed == {s["external_id"] for s in sessions if s["state"] == "complete"}
  return len(resp)


def test_nothing_lost_sqlite(exp_dir, tmp_path):
  db = f"sqlite:///{tmp_path / 'durable.db'}"
  results = _run(exp_dir, db, tmp_path)
  engine = store.make_engine(db)
  _check(results, engine)
  with engine.connect() as conn:
    assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
  engine.dispose()


def test_nothing_lost_postgres(exp_dir, tmp_path, postgres):
  db = postgres.new_database()
  results = _run(exp_dir, db, tmp_path)
  engine = store.make_engine(db)
  _check(results, engine)
  engine.dispose()
