"""Where an answer request's time goes in the study server: a CPU profile under load.

    python benchmarks/human_profile.py [--participants=100] [--concurrency=50]
        [--backend=sqlite] [--out=docs/figures/human_profile.json]

Runs the server in this process (one uvicorn process, as `cv-jax human serve --workers=1`)
under yappi's CPU clock, drives it with the closed-loop participants of `human_load.py` from
separate client processes, and reports:

* server CPU per request (all threads; yappi's own overhead included, so read the shares, not
  the absolute milliseconds), split by where the time was spent: the HTTP server (uvicorn,
  httptools/h11), the web framework (FastAPI, Starlette, pydantic), the asyncio loop and
  thread hand-offs, SQLAlchemy, the database driver (sqlite3 / psycopg, commit and fsync
  included), JSON, and cv_jax's own study logic;
* SQL statements per answer request (inside the request's job) and per commit, the writer's
  mean batch size (requests per COMMIT) on SQLite;
* the ten functions with the most own CPU time.

Needs yappi (`pip install yappi`; the `bench` extra). Records `uptime` before and after.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import multiprocessing
import pathlib
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

import human_load as hl  # noqa: E402
import human_util as hu  # noqa: E402

GROUPS = (  # (group, substrings of yappi's module path or function name), first match wins
    ("database driver (sqlite3/psycopg: execute, commit, fsync)",
     ("sqlite3", "psycopg")),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("HTTP server (uvicorn, httptools, h11)", ("uvicorn", "httptools", "h11")),
    ("web framework (FastAPI, Starlette, pydantic)",
     ("fastapi", "starlette", "pydantic")),
    ("JSON", ("json", "orjson")),
    ("cv_jax study logic", ("cv_jax",)),
    ("asyncio, anyio, threads, queues", ("asyncio", "anyio", "threading", "queue",
                                         "concurrent", "selectors", "uvloop", "socket")),
)


def group_of(stat) -> str:
  """The GROUPS name of a yappi function stat."""
  where = f"{stat.module} {stat.name}".lower()
  for name, keys in GROUPS:
    if any(k in where for k in keys):
      return name
  return "other"


def main() -> None:
  """Profile the server under load and write the JSON."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--participants", type=int, default=100)
  ap.add_argument("--concurrency", type=int, default=50)
  ap.add_argument("--client_procs", type=int, default=4)
  ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
  ap.add_argument("--out", default=str(REPO / "docs" / "figures" / "human_profile.json"))
  args = ap.parse_args()
  try:
    import yappi
  except ImportError:
    sys.exit("human_profile: error: needs yappi (pip install yappi, or the bench extra)")
  import sqlalchemy as sa
  import uvicorn

  from cv_jax.human import study
  from cv_jax.human.app import create_app
  from cv_jax.testing import human_experiment

  tmp = pathlib.Path(tempfile.mkdtemp(prefix="cvjax_prof_"))
  human_experiment.make(tmp / "exp", n_tasks=args.participants // 5 + 10)
  pg = None
  if args.backend == "sqlite":
    db = f"sqlite:///{tmp / 'prof.db'}"
  else:
    pg = hu.Postgres().start()
    db = pg.new_database()
  hu.cli("human", "init", f"--experiment={tmp / 'exp'}", f"--db={db}")
  app = create_app(tmp / "exp", db, admin_token="profile-admin-token-0123")

  # SQL statements: counted per thread, attributed to the study function running on it.
  local = threading.local()
  per_job: dict[str, list[int]] = collections.defaultdict(list)
  commits = [0]
  statements = [0]

  @sa.event.listens_for(app.state.engine, "before_cursor_execute")
  def _count(*_a):
    local.n = getattr(local, "n", 0) + 1
    statements[0] += 1

  @sa.event.listens_for(app.state.engine, "commit")
  def _commit(_conn):
    commits[0] += 1

  for name in ("post_responses", "post_events", "state", "finish"):
    fn = getattr(study, name)

    def counted(*a, _fn=fn, _name=name, **k):
      n0 = getattr(local, "n", 0)
      try:
        return _fn(*a, **k)
      finally:
        per_job[_name].append(getattr(local, "n", 0) - n0)
    setattr(study, name, counted)

  port = hu.free_port()
  server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False,
                                         log_level="warning"))
  th = threading.Thread(target=server.run, daemon=True)
  yappi.set_clock_type("cpu")
  yappi.start(builtins=True)
  th.start()
  while not server.started:
    time.sleep(0.05)
  url = f"http://127.0.0.1:{port}"
  before = hl.uptime()
  procs = args.client_procs
  shares = [list(range(k, args.participants, procs)) for k in range(procs)]
  threads = [args.concurrency // procs + (k < args.concurrency % procs) for k in range(procs)]
  t0 = time.perf_counter()
  with cf.ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
    futs = [pool.submit(hl._client_process, url, ids, n, "closed", 1.0, "light", 0.0)
            for ids, n in zip(shares, threads)]
    results = [r for f in futs for r in f.result()]
  wall = time.perf_counter() - t0
  server.should_exit = True
  th.join(30)
  yappi.stop()
  after = hl.uptime()
  if pg is not None:
    pg.stop()

  n_req = sum(len(r["latencies"]) for r in results)
  n_ans = sum(1 for r in results for k, *_ in r["latencies"] if k == "responses")
  stats = yappi.get_func_stats()
  total = sum(t.ttot for t in yappi.get_thread_stats())
  groups: dict[str, float] = collections.Counter()
  for s in stats:
    groups[group_of(s)] += s.tsub
  top = sorted(stats, key=lambda s: -s.tsub)[:10]
  writer = app.state.writer
  out = {
      "backend": args.backend, "participants": args.participants,
      "concurrency": args.concurrency, "requests": n_req, "answer_requests": n_ans,
      "wall_s": round(wall, 2), "uptime_before": before, "uptime_after": after,
      "server_cpu_ms_per_request_under_yappi": round(1000 * total / n_req, 3),
      "cpu_share_by_group": {k: round(v / total, 3) for k, v in
                             sorted(groups.items(), key=lambda kv: -kv[1])},
      "sql_statements_per_job": {k: round(sum(v) / len(v), 2) for k, v in per_job.items()},
      "sql_statements_per_request_all": round(statements[0] / n_req, 2),
      "commits": commits[0],
      "requests_per_commit": round(n_req / max(1, commits[0]), 2),
      "writer_batches": writer.batches if writer is not None else None,
      "top_functions_own_cpu": [
          {"function": f"{pathlib.Path(s.module).name}:{s.lineno} {s.name}",
           "calls": s.ncall, "share": round(s.tsub / total, 3)} for s in top],
  }
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
