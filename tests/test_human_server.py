"""The study server without a browser: API rules, secrecy, admin auth, leases and attempts,
claims under contention (SQLite and PostgreSQL), export consistency, the CLI's one-line errors,
no JAX, package data, and the API fuzzed from its own OpenAPI schema (human_experiment_spec
§3.3-3.6, §3.13)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import pathlib
import subprocess
import sys
import zipfile

import human_util as hu
import pytest

fastapi_tc = pytest.importorskip("fastapi.testclient")

from cv_jax.human import app as app_lib  # noqa: E402
from cv_jax.human import export, export_format, stimuli, store, study  # noqa: E402
from cv_jax.human.client import Faults, Participant  # noqa: E402
from cv_jax.human.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
  from cv_jax.testing import human_experiment
  root = tmp_path_factory.mktemp("human_exp")
  human_experiment.make(root / "exp", n_tasks=2)
  return root / "exp"


@pytest.fixture(scope="module")
def experiment(exp_dir):
  return stimuli.load(exp_dir)


@pytest.fixture(scope="module")
def postgres():
  yield from hu.postgres_cluster()


def _study(tmp_path, exp_dir, experiment, settings=Settings(), db=None):
  db = db or f"sqlite:///{tmp_path / 'h.db'}"
  study.init_study(store.make_engine(db), experiment, settings)
  app = app_lib.create_app(exp_dir, db, admin_token=hu.ADMIN)
  return fastapi_tc.TestClient(app), db


def _start(client, pid, condition=None):
  r = client.post("/api/sessions", json={"source": "link", "ids": {"pid": pid},
                                         "condition": condition})
  assert r.status_code in (200, 201), r.text
  return r.json()["token"]


def _task(experiment, db, token):
  rows = hu.sqlite_rows(db.split("///", 1)[1], "SELECT task_id FROM session WHERE "
                        "token_sha256=?", (study.token_hash(token),))
  return experiment.tasks[rows[0]["task_id"]]


def _answer(client, token, phase, attempt, idx, button, rt=800.0):
  return client.post(f"/api/s/{token}/responses", json={"responses": [
      {"phase": phase, "attempt": attempt, "entry_index": idx, "button_index": button,
       "rt_ms": rt, "t_shown": 1000.0, "t_choice": 1000.0 + rt}]})


def _skip_to_main(client, token):
  client.post(f"/api/s/{token}/events", json={"events": [
      {"page_load_id": "p", "seq": 0, "kind": "run_start", "t_client": 1.0},
      {"page_load_id": "p", "seq": 1, "kind": "instructions_end", "t_client": 2.0}]})
  st = client.get(f"/api/s/{token}").json()
  while st["state"] == "practice":
    for e in st["practice"]["entries"]:
      _answer(client, token, "practice", e["attempt"], e["entry_index"], 0)
    st = client.get(f"/api/s/{token}").json()
  return st


def test_answers_stored_once_conflicts_refused_and_logged(tmp_path, exp_dir, experiment):
  client, db = _study(tmp_path, exp_dir, experiment)
  tok = _start(client, "p1", "none")
  st = _skip_to_main(client, tok)
  assert st["state"] == "main" and len(st["main"]["entries"]) == 21
  r1 = _answer(client, tok, "main", 0, 3, 5)
  assert r1.status_code == 200 and r1.json()["results"][0]["status"] == "stored"
  r2 = _answer(client, tok, "main", 0, 3, 5)  # a retry: same payload
  assert r2.status_code == 200 and r2.json()["results"][0]["status"] == "duplicate"
  r3 = _answer(client, tok, "main", 0, 3, 0)  # a different second answer
  assert r3.status_code == 409 and r3.json()["results"][0]["status"] == "conflict"
  f = db.split("///", 1)[1]
  rows = hu.sqlite_rows(f, "SELECT * FROM response WHERE entry_index=3 AND phase='main'")
  assert len(rows) == 1 and rows[0]["button_index"] == 5 and rows[0]["confidence"] == 3
  task = _task(experiment, db, tok)
  side = task["trials"][3]["max_side"]
  assert rows[0]["max_side"] == side and bool(rows[0]["correct"]) == (side == "right")
  assert rows[0]["mode"] == task["trials"][3]["mode"]
  kinds = [a["kind"] for a in hu.sqlite_rows(f, "SELECT kind FROM anomaly")]
  assert kinds == ["conflicting_response"]
  # an entry that does not exist, and practice after main, are refused
  assert _answer(client, tok, "main", 0, 21, 1).status_code == 409
  assert _answer(client, tok, "practice", 1, 0, 1).status_code == 409


def test_completion_only_after_every_main_answer(tmp_path, exp_dir, experiment):
  client, db = _study(tmp_path, exp_dir, experiment)
  tok = _start(client, "p2", "natural")
  st = _skip_to_main(client, tok)
  for e in st["main"]["entries"][:-1]:
    _answer(client, tok, "main", 0, e["entry_index"], 4)
  r = client.post(f"/api/s/{tok}/finish", json={"feedback": "x"})
  assert r.status_code == 409 and r.json()["missing"] == 1
  _answer(client, tok, "main", 0, st["main"]["entries"][-1]["entry_index"], 4)
  r = client.post(f"/api/s/{tok}/finish", json={"feedback": "x"})
  assert r.status_code == 200 and r.json()["kind"] == "code" and len(r.json()["code"]) == 10
  again = client.post(f"/api/s/{tok}/finish", json={"feedback": "x"}).json()
  assert again == r.json()
  s = hu.sqlite_rows(db.split("///", 1)[1], "SELECT * FROM session")[0]
  assert s["state"] == "complete" and s["passed"] in (0, 1)
  checks = json.loads(s["exclusion_json"])
  # timestamps of these answers are 1 s: the time checks fail, so the slot reopens
  assert not checks["total_time"]["passed"] and s["passed"] == 0
  slot = hu.sqlite_rows(db.split("///", 1)[1], "SELECT * FROM slot WHERE id=?",
                        (s["slot_id"],))[0]
  assert slot["status"] == "open" and slot["attempts"] == 1
  # the same participant again: already participated
  r = client.post("/api/sessions", json={"source": "link", "ids": {"pid": "p2"}})
  assert r.status_code == 409


def test_secrecy_admin_auth_and_foreign_tokens(tmp_path, exp_dir, experiment):
  client, db = _study(tmp_path, exp_dir, experiment)
  a, b = _start(client, "pa", "synthetic"), _start(client, "pb", "blur")
  sa_, sb = client.get(f"/api/s/{a}").json(), client.get(f"/api/s/{b}").json()
  img_a = sa_["images"][0]
  assert client.get(img_a).status_code == 200
  assert client.get(img_a).headers["cache-control"].startswith("private")
  assert client.get(f"/api/s/{a}").headers["cache-control"] == "no-store"
  only_b = sorted(set(sb["images"]) - {u.replace(a, b) for u in sa_["images"]})
  assert only_b  # the two conditions show some different images
  for url in only_b:  # each of B's own images under A's token
    assert client.get(url.replace(b, a)).status_code == 404
  assert client.get(img_a.replace(a, "x" * 32)).status_code == 404
  assert client.get("/api/s/" + "y" * 32).status_code == 404
  for path in ("/experiment.json", "/static/experiment.json", "/stimuli", "/exp/experiment.json"):
    assert client.get(path).status_code == 404
  text = json.dumps(sa_)
  for secret in ("max_side", "correct", "catch", "stimuli/", "trial"):
    assert secret not in text
  for path in ("/admin/status", "/admin/export"):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": hu.ADMIN}).status_code == 401
  ok = client.get("/admin/status", headers={"Authorization": f"Bearer {hu.ADMIN}"})
  assert ok.status_code == 200 and ok.json()["slots"]["synthetic"]["leased"] == 1
  assert client.post("/admin/close").status_code == 401
  assert client.get("/openapi.json").status_code == 200


def test_lease_expiry_abandons_and_reopens_third_failure_retires(tmp_path, exp_dir, experiment):
  settings = Settings(lease_s=0.2, max_attempts=3)
  client, db = _study(tmp_path, exp_dir, experiment, settings)
  f = db.split("///", 1)[1]
  tok = _start(client, "slow", "mixed")
  _answer(client, tok, "main", 0, 0, 1)  # refused: still in instructions
  import time
  time.sleep(0.3)
  assert client.get(f"/api/s/{tok}").status_code == 410
  s = hu.sqlite_rows(f, "SELECT * FROM session")[0]
  slot = hu.sqlite_rows(f, "SELECT * FROM slot WHERE id=?", (s["slot_id"],))[0]
  assert s["state"] == "abandoned" and slot["status"] == "open"
  assert hu.sqlite_rows(f, "SELECT count(*) AS n FROM event")[0]["n"] >= 1  # data kept
  # failed exclusion three times on one slot -> retired (a long lease this time)
  client2, db2 = _study(tmp_path / "b", exp_dir, experiment, Settings(max_attempts=3),
                        db=f"sqlite:///{tmp_path / 'b.db'}")
  f2 = db2.split("///", 1)[1]
  statuses = []
  for k in range(3):
    tok = _start(client2, f"fail{k}", "none")
    slot_id = hu.sqlite_rows(f2, "SELECT slot_id FROM session WHERE token_sha256=?",
                             (study.token_hash(tok),))[0]["slot_id"]
    st = _skip_to_main(client2, tok)
    for e in st["main"]["entries"]:
      _answer(client2, tok, "main", 0, e["entry_index"], 0)
    assert client2.post(f"/api/s/{tok}/finish", json={}).status_code == 200
    statuses.append(hu.sqlite_rows(f2, "SELECT status, attempts FROM slot WHERE id=?",
                                   (slot_id,))[0])
  assert [s["status"] for s in statuses] == ["open", "open", "retired"]
  assert [s["attempts"] for s in statuses] == [1, 2, 3]


def test_instruction_examples_from_the_schema(tmp_path):
  from cv_jax.experiment import schema
  from cv_jax.testing import human_experiment
  path = human_experiment.make(tmp_path / "ex", n_tasks=1, examples=True,
                               conditions=("mixed", "none"))
  exp = stimuli.load(path.parent)
  client, _ = _study(tmp_path, path.parent, exp)
  doc = exp.doc
  for c in ("mixed", "none"):
    st = client.get(f"/api/s/{_start(client, 'ex-' + c, c)}").json()
    entry = doc["instructions"]["examples"][c][0]
    trial = exp.trials[entry["trial"]]
    want = [exp.path_hash[p] for p in trial["references"][c]]
    got = [u.rsplit("/", 1)[1][:-4] for u in st["examples"][0]["references"]]
    assert got == want and st["examples"][0]["left"].endswith(
        exp.path_hash[trial["images"]["max"]] + ".png")
  bad = json.loads(json.dumps(doc))
  bad["instructions"]["examples"]["none"][0]["trial"] = "nope"
  with pytest.raises(schema.SchemaError, match="unknown trial"):
    schema.validate(bad)


def test_refusals_blocked_preview_other_experiment(tmp_path, exp_dir, experiment):
  client, db = _study(tmp_path, exp_dir, experiment)
  study.block(store.make_engine(db), ["banned"])
  assert client.post("/api/sessions", json={"source": "link", "ids": {"pid": "banned"}}
                     ).status_code == 403
  r = client.post("/api/sessions", json={"source": "mturk", "ids": {
      "workerId": "w", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}})
  assert r.status_code == 400
  assert hu.sqlite_rows(db.split("///", 1)[1], "SELECT count(*) AS n FROM slot WHERE "
                        "status!='open'")[0]["n"] == 0
  for i in range(2):  # 2 tasks of `none`
    _start(client, f"n{i}", "none")
  assert client.post("/api/sessions", json={"source": "link", "ids": {"pid": "n9"},
                                            "condition": "none"}).status_code == 410
  other = tmp_path / "other"
  from cv_jax.testing import human_experiment
  human_experiment.make(other, n_tasks=1, conditions=("none",))
  with pytest.raises(app_lib.StudyNotReady, match="another experiment"):
    app_lib.create_app(other, db)
  with pytest.raises(ValueError, match="another experiment"):
    study.init_study(store.make_engine(db), stimuli.load(other), Settings())


def _claim_storm(experiment, db, n_threads=64):
  engine = store.make_engine(db, pool_size=16)
  sid, _ = study.init_study(engine, experiment, Settings())

  def one(i):
    def op():
      with store.write_tx(engine) as conn:
        return study.start_session(conn, experiment, Settings(), sid, "sim",
                                   {"pid": f"c{i % 48}"}, store.now_ms())
    try:
      return store.retrying(op)[0]
    except study.StudyError as e:
      return e.status

  with cf.ThreadPoolExecutor(n_threads) as pool:
    codes = list(pool.map(one, range(n_threads)))
  with store.read_tx(engine) as conn:
    sessions = [dict(r._mapping) for r in conn.execute(store.session.select())]
    slots = [dict(r._mapping) for r in conn.execute(store.slot.select())]
  engine.dispose()
  return codes, sessions, slots


def _check_storm(codes, sessions, slots):
  n_slots = len(slots)  # 10 tasks, 48 distinct ids, 64 requests (16 repeats)
  assert codes.count(201) == n_slots
  assert len(sessions) == n_slots
  assert len({s["slot_id"] for s in sessions}) == n_slots  # no slot twice
  assert len({s["participant_id"] for s in sessions}) == n_slots  # no participant twice
  assert all(s["status"] == "leased" for s in slots)
  assert set(codes) <= {200, 201, 410}
  per_cond = {}
  for s in sessions:
    per_cond[s["condition"]] = per_cond.get(s["condition"], 0) + 1
  assert set(per_cond.values()) == {2}  # balanced: every condition's 2 tasks


def test_claims_under_contention_sqlite(tmp_path, experiment):
  _check_storm(*_claim_storm(experiment, f"sqlite:///{tmp_path / 'c.db'}"))


def test_claims_under_contention_postgres(postgres, experiment):
  _check_storm(*_claim_storm(experiment, postgres.new_database()))


def test_export_counts_match_and_read_back(tmp_path, exp_dir, experiment):
  client, db = _study(tmp_path, exp_dir, experiment)
  srv = _ThreadServer(client.app)
  try:
    res = Participant(srv.url, "e1", condition="synthetic", seed=3,
                      faults=Faults(duplicate_p=0.5, batch=3)).run()
  finally:
    srv.stop()
  assert res.status == "complete", res.status
  out = export.export(store.make_engine(db), tmp_path / "ex.zip")
  ex = export_format.read_export(out)
  f = db.split("///", 1)[1]
  for table, sql in (("responses", "response"), ("events", "event"), ("sessions", "session"),
                     ("participants", "participant"), ("anomalies", "anomaly"),
                     ("practice_draws", "practice_draw")):
    n = hu.sqlite_rows(f, f"SELECT count(*) AS n FROM {sql}")[0]["n"]
    assert ex.manifest["counts"][table] == n == len(ex[table])
  assert ex.manifest["experiment_sha256"] == experiment.sha256
  main = [r for r in ex["responses"] if r["phase"] == "main"]
  assert len(main) == 21
  acked = {k: v for k, v in res.acked.items() if k.startswith("main")}
  for r in main:
    sent = acked[f"main:0:{r['entry_index']}"]
    assert r["button_index"] == sent["button_index"] and r["rt_ms"] == sent["rt_ms"]
  trials = [r for r in ex.jspsych if r["trial_type"] == export_format.TRIAL_TYPE]
  assert len(trials) == len(ex["responses"])
  with zipfile.ZipFile(out) as z:
    assert "manifest.json" in z.namelist()
  hdr = {"Authorization": f"Bearer {hu.ADMIN}"}
  r = client.get("/admin/export", headers=hdr)
  assert r.status_code == 200 and r.content[:2] == b"PK"
  snap = client.get("/admin/export.sqlite", headers=hdr)
  assert snap.status_code == 200 and snap.content[:15] == b"SQLite format 3"


class _ThreadServer:
  """uvicorn in a thread on 127.0.0.1 (for the HTTP client in-process)."""

  def __init__(self, app):
    import threading
    import time
    import uvicorn
    self.port = hu.free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                log_level="warning", access_log=False))
    self.thread = threading.Thread(target=self.server.run, daemon=True)
    self.thread.start()
    for _ in range(200):
      if self.server.started:
        return
      time.sleep(0.02)
    raise RuntimeError("server did not start")

  def stop(self):
    self.server.should_exit = True
    self.thread.join(10)


def test_cli_one_line_errors(tmp_path, exp_dir):
  cases = [("human", "init", f"--experiment={tmp_path}", f"--db={tmp_path / 'a.db'}"),
           ("human", "serve", f"--experiment={exp_dir}", f"--db={tmp_path / 'none.db'}"),
           ("human", "status", f"--db={tmp_path / 'missing.db'}"),
           ("human", "export", f"--db={tmp_path / 'missing.db'}", f"--out={tmp_path / 'o'}"),
           ("human", "block", f"--db={tmp_path / 'a.db'}"),
           ("human", "nosuch")]
  for args in cases:
    p = hu.cli(*args, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, (args, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("cv-jax human") and ": error: " in lines[0], \
        (args, p.stderr)
    assert "Traceback" not in p.stderr
  db = tmp_path / "ok.db"
  p = hu.cli("human", "init", f"--experiment={exp_dir}", f"--db={db}")
  assert "created: 10 tasks" in p.stdout
  p = hu.cli("human", "status", f"--db={db}")
  assert "synthetic" in p.stdout and "sessions: none" in p.stdout
  p = hu.cli("human", "export", f"--db={db}", f"--out={tmp_path / 'ex'}")
  assert (tmp_path / "ex" / "manifest.json").exists()


def test_imports_no_jax():
  code = ("import sys; import cv_jax.human.app, cv_jax.human.client, cv_jax.human.export, "
          "cv_jax.human.cli, cv_jax.human.commands.serve; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax')]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, env=hu.env(), timeout=60)


def test_package_data_in_wheel_and_no_external_urls(tmp_path):
  static = hu.REPO / "cv_jax" / "human" / "static"
  files = sorted(p.name for p in static.iterdir() if p.is_file())
  assert {"start.html", "run.html", "style.css", "flow.js", "api.js", "trial.js"} <= set(files)
  import re
  for name in files:
    text = (static / name).read_text()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-q", "-w", str(tmp_path), str(hu.REPO)], check=True, timeout=300,
                 capture_output=True)
  wheel = next(pathlib.Path(tmp_path).glob("cv_jax-*.whl"))
  names = set(zipfile.ZipFile(wheel).namelist())
  for name in files:
    assert f"cv_jax/human/static/{name}" in names, name


def test_openapi_fuzz_no_server_errors(tmp_path, exp_dir, experiment):
  schemathesis = pytest.importorskip("schemathesis")
  from hypothesis import HealthCheck, given, settings
  client, _ = _study(tmp_path, exp_dir, experiment)
  tok = _start(client, "fuzz", "synthetic")
  schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
  seen = []
  for result in schema.get_all_operations():
    op = result.ok()

    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case):
      if "token" in (case.path_parameters or {}) and len(seen) % 2 == 0:
        case.path_parameters["token"] = tok  # half the cases on a real session
      r = case.call()
      seen.append((case.method, case.path, r.status_code))
      assert r.status_code < 500, (case.method, case.path, r.status_code, r.text[:300])

    run()
  paths = {p for _, p, _ in seen}
  assert "/api/s/{token}/responses" in paths and "/api/sessions" in paths
  assert any(c < 300 for *_, c in seen) and any(400 <= c < 500 for *_, c in seen)


def test_group_writer_batch_savepoints_and_failed_commit(tmp_path):
  """One batch of the SQLite group writer: a failing job loses only its own writes, a `keeps`
  exception keeps them, the others commit together; checked with sqlite3 directly. A batch
  whose COMMIT fails acknowledges nothing and stores nothing."""
  import concurrent.futures as futures
  import sqlite3

  import sqlalchemy as sa

  from cv_jax.human.writer import GroupWriter

  class Keep(Exception):
    pass

  db = tmp_path / "w.db"
  engine = store.make_engine(f"sqlite:///{db}")
  t = sa.Table("t", sa.MetaData(), sa.Column("v", sa.Text, primary_key=True))
  t.metadata.create_all(engine)
  w = GroupWriter(engine, keeps=lambda e: isinstance(e, Keep))

  def ins(v, exc=None):
    def job(conn):
      conn.execute(t.insert().values(v=v))
      if exc is not None:
        raise exc
      return v
    return job

  jobs = [(ins("a"), futures.Future()), (ins("b", ValueError("no")), futures.Future()),
          (ins("c", Keep()), futures.Future()), (ins("d"), futures.Future())]
  w._run(jobs)
  assert [f.result() for f in (jobs[0][1], jobs[3][1])] == ["a", "d"]
  with pytest.raises(ValueError):
    jobs[1][1].result()
  with pytest.raises(Keep):
    jobs[2][1].result()
  rows = sqlite3.connect(db).execute("SELECT v FROM t ORDER BY v").fetchall()
  assert rows == [("a",), ("c",), ("d",)]

  @sa.event.listens_for(engine, "commit")
  def _fail(conn):
    raise sa.exc.OperationalError("COMMIT", {}, RuntimeError("disk I/O error"))

  jobs = [(ins("e"), futures.Future()), (ins("f"), futures.Future())]
  w._run(jobs)
  for _, f in jobs:
    with pytest.raises(sa.exc.OperationalError):
      f.result()
  sa.event.remove(engine, "commit", _fail)
  rows = sqlite3.connect(db).execute("SELECT v FROM t ORDER BY v").fetchall()
  assert rows == [("a",), ("c",), ("d",)]
  assert w.run(ins("g")) == "g"  # through the thread
  engine.dispose()
