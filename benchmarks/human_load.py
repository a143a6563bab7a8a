"""Load benchmark of the study server: answers per second and answer-request latency (p50/p99)
with 50 and 200 concurrent simulated participants, on SQLite and on PostgreSQL.

    python benchmarks/human_load.py [--out=docs/figures/human_load.json]
        [--concurrency=50,200] [--participants=100,200] [--backends=sqlite,postgres]

Each run: a fresh database, `cv-jax human serve --workers=2` on 127.0.0.1, participants from
`cv_jax.human.client` (one answer per request, as the page sends them) in threads of this
process, a synthetic experiment with tasks of 21 main entries. The peer in the same run is the
database itself: the rate of single-row durable commits one writer gets from it directly
(SQLite WAL + synchronous=FULL + BEGIN IMMEDIATE; PostgreSQL with fsync on) — the server's
answers/s divided by that is how much of the database's write rate the HTTP layer keeps.

PostgreSQL: `CV_JAX_TEST_PG_URL`, else a throwaway cluster from /usr/lib/postgresql/15/bin.
Records `uptime` before and after: the machine may be shared, which makes latencies longer.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import human_util as hu  # noqa: E402

from cv_jax.human import store  # noqa: E402
from cv_jax.human.client import Participant  # noqa: E402


def uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def pct(xs, q):
  xs = sorted(xs)
  return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def raw_commits(db_url: str, n: int = 300) -> float:
  """Durable single-row commits per second, one writer, straight to the database."""
  import sqlalchemy as sa
  engine = store.make_engine(db_url)
  t = sa.Table("bench_commit", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
               sa.Column("v", sa.Text))
  t.metadata.create_all(engine)
  t0 = time.perf_counter()
  for i in range(n):
    with store.write_tx(engine) as conn:
      conn.execute(t.insert().values(v=f"answer {i}"))
  rate = n / (time.perf_counter() - t0)
  engine.dispose()
  return rate


def run(exp_dir: pathlib.Path, db_url: str, concurrency: int, participants: int) -> dict:
  hu.cli("human", "init", f"--experiment={exp_dir}", f"--db={db_url}")
  server = hu.Server(exp_dir, db_url, workers=2).start()
  try:
    def one(i):
      return Participant(server.url, f"b{i:05d}", seed=i, timeout=30, retry_s=30,
                         decide=lambda e, info, r=random.Random(i): (r.choice([0, 5]), 900.0)
                         ).run()
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
      results = list(pool.map(one, range(participants)))
    wall = time.perf_counter() - t0
  finally:
    server.stop()
  lat = collections.defaultdict(list)
  errors = 0
  for r in results:
    for kind, s, code in r.latencies:
      lat[kind].append(s)
      errors += code == 0 or code >= 500
  answers = sum(len(r.acked) for r in results)
  return {"concurrency": concurrency, "participants": participants, "wall_s": round(wall, 2),
          "answers": answers, "answers_per_s": round(answers / wall, 1),
          "answer_p50_ms": round(1000 * pct(lat["responses"], 0.5), 1),
          "answer_p99_ms": round(1000 * pct(lat["responses"], 0.99), 1),
          "all_requests": sum(len(v) for v in lat.values()),
          "all_p99_ms": round(1000 * pct([x for v in lat.values() for x in v], 0.99), 1),
          "errors": errors,
          "complete": sum(r.status == "complete" for r in results)}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=str(REPO / "docs" / "figures" / "human_load.json"))
  ap.add_argument("--concurrency", default="50,200")
  ap.add_argument("--participants", default="100,200")
  ap.add_argument("--backends", default="sqlite,postgres")
  args = ap.parse_args()
  conc = [int(x) for x in args.concurrency.split(",")]
  parts = [int(x) for x in args.participants.split(",")]
  from cv_jax.testing import human_experiment
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="cvjax_load_"))
  exp = tmp / "exp"
  human_experiment.make(exp, n_tasks=max(parts) // 5 + 10)
  out = {"uptime_before": uptime(), "runs": []}
  pg = None
  print(out["uptime_before"], flush=True)
  for backend in args.backends.split(","):
    if backend == "postgres":
      pg = hu.Postgres()
      if not pg.available:
        print("no PostgreSQL: skipped", flush=True)
        continue
      pg.start()
    for c, n in zip(conc, parts):
      db = (f"sqlite:///{tmp / f'load_{c}.db'}" if backend == "sqlite" else pg.new_database())
      raw_db = (f"sqlite:///{tmp / f'raw_{c}.db'}" if backend == "sqlite" else pg.new_database())
      raw = raw_commits(raw_db)
      r = run(exp, db, c, n)
      r.update(backend=backend, db_commits_per_s=round(raw, 1),
               ratio_to_db=round(r["answers_per_s"] / raw, 3), uptime_after=uptime())
      out["runs"].append(r)
      print(json.dumps(r), flush=True)
  if pg is not None:
    pg.stop()
  out["uptime_after"] = uptime()
  path = pathlib.Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=1) + "\n")
  print(f"{'backend':<9} {'conc':>5} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'db commits/s':>13} {'ratio':>6}")
  for r in out["runs"]:
    print(f"{r['backend']:<9} {r['concurrency']:>5} {r['answers_per_s']:>10} "
          f"{r['answer_p50_ms']:>8} {r['answer_p99_ms']:>8} {r['errors']:>6} "
          f"{r['db_commits_per_s']:>13} {r['ratio_to_db']:>6}")
  print(out["uptime_after"])


if __name__ == "__main__":
  main()
