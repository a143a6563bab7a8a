"""Load benchmark of the study server: answers per second and answer-request latency (p50/p99)
with 50 and 200 concurrent simulated participants, on SQLite and on PostgreSQL, in two modes.

    python benchmarks/human_load.py [--out=docs/figures/human_load.json]
        [--modes=closed,paced] [--concurrency=50,200] [--participants=100,200]
        [--backends=sqlite,postgres] [--time_scale=0.25] [--workers=1,2] [--client_procs=4]
        [--http=light] [--gil_check=1]
    python benchmarks/human_load.py --markdown=docs/figures/human_load.json   # the table

Modes:
* `closed` (the stress figure): every participant sends its next answer as soon as the last
  one is acknowledged — no think time, so at C concurrent participants latency is about
  C / throughput. `--participants` sessions in all, C at a time.
* `paced` (participants as people): each participant waits its answer's reaction time (an
  ex-Gaussian, `cv_jax.human.simulate.exgauss_ms`: mu 1.8 s, sigma 0.4 s, tau 1.5 s) plus the
  Continue click (0.35 s + U(0.2, 0.8) s) before sending the answer, all times multiplied by
  `--time_scale` (0.25: four times faster than a person, a harder load than a real study);
  C participants, all at once, their starts spread over the first few seconds.

Each run: a fresh database, `cv-jax human serve --workers=W` on 127.0.0.1 (W: `--workers`, one
value per backend: SQLite writes through one process's group-commit writer, PostgreSQL takes
several), participants from `cv_jax.human.client` (one answer per request, as the page sends
them) in `--client_procs` processes of threads — so the clients' own GIL does not delay the
clock reads of up to 200 threads in one process — over a lean keep-alive HTTP client
(`--http=light`, http.client; `httpx` is the heavier default of the client module), so the
clients take less of the two shared cores from the server. A synthetic experiment with tasks
of 21 main entries. The peer in the same run is the database itself: the rate of single-row
durable commits one writer gets from it directly (SQLite WAL + synchronous=FULL + BEGIN
IMMEDIATE; PostgreSQL with fsync on). The server's CPU seconds per request (its processes,
from /proc) do not depend on how busy the machine is.

PostgreSQL: `CV_JAX_TEST_PG_URL`, else a throwaway cluster from /usr/lib/postgresql/15/bin.
Records `uptime` before and after: the machine may be shared, which makes latencies longer.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.client
import json
import multiprocessing
import os
import pathlib
import random
import select
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import human_util as hu  # noqa: E402

from cv_jax.human import store  # noqa: E402


def uptime() -> str:
  """The `uptime` line."""
  return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def pct(xs, q):
  """The q-quantile of xs (nearest rank)."""
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


# ------------------------------------------------------------------------------ clients

_dumps = json.dumps

class _Reply:
  def __init__(self, status: int, data: bytes):
    self.status_code, self._data = status, data

  @property
  def text(self) -> str:
    return self._data.decode("utf-8", "replace")

  def json(self):
    return json.loads(self._data)


class LightHttp:
  """A keep-alive HTTP/1.1 connection with the part of `httpx.Client` the participant uses
  (`request`, `post`, `close`); failures raise `httpx.TransportError`, which the participant
  retries. A connection the server closed while idle is replaced before it is reused, never
  after a request was sent on it."""

  def __init__(self, base_url: str, timeout: float):
    u = urllib.parse.urlsplit(base_url)
    self.host, self.port, self.timeout = u.hostname, u.port, timeout
    self.conn: http.client.HTTPConnection | None = None

  def _fresh(self) -> http.client.HTTPConnection:
    if self.conn is not None and self.conn.sock is not None:
      readable, _, _ = select.select([self.conn.sock], [], [], 0)
      if readable:  # idle keep-alive connection closed by the server (EOF pending)
        self.close()
    if self.conn is None:
      self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
    return self.conn

  def request(self, method: str, url: str, json: object = None) -> _Reply:  # noqa: A002
    import httpx
    u = urllib.parse.urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    body = None if json is None else _dumps(json).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
      conn = self._fresh()
      conn.request(method, path, body=body, headers=headers)
      r = conn.getresponse()
      data = r.read()
      if r.will_close:
        self.close()
      return _Reply(r.status, data)
    except (OSError, http.client.HTTPException) as e:
      self.close()
      raise httpx.TransportError(f"{type(e).__name__}: {e}") from e

  def post(self, url: str, json: object = None, timeout: object = None) -> _Reply:  # noqa: A002
    return self.request("POST", url, json=json)

  def close(self) -> None:
    if self.conn is not None:
      self.conn.close()
      self.conn = None


def _participant(url: str, i: int, mode: str, scale: float, http_kind: str):
  from cv_jax.human.client import Participant
  rng = random.Random(i)
  if mode == "paced":
    import numpy as np

    from cv_jax.human.simulate import exgauss_ms
    nrng = np.random.default_rng(i)

    def decide(entry, info):
      rt = exgauss_ms(nrng)
      time.sleep(scale * (rt + 350.0 + rng.uniform(200.0, 800.0)) / 1000.0)
      return rng.choice([0, 5]), round(rt)
  else:
    def decide(entry, info):
      return rng.choice([0, 5]), 900.0
  http = LightHttp(url, 30.0) if http_kind == "light" else None
  return Participant(url, f"b{i:05d}", seed=i, timeout=30, retry_s=30, decide=decide,
                     http=http)


def _client_process(url: str, ids: list[int], threads: int, mode: str, scale: float,
                    http_kind: str, stagger_s: float) -> list[dict]:
  """One client process: `threads` threads playing the participants `ids`; returns per
  participant its status, answers acknowledged and (kind, seconds, HTTP status) per request."""
  def one(i):
    if stagger_s:
      time.sleep(random.Random(-i).uniform(0.0, stagger_s))
    p = _participant(url, i, mode, scale, http_kind)
    r = p.run()
    if p.http is not None and hasattr(p.http, "close"):
      p.http.close()
    return {"status": r.status, "acked": len(r.acked), "latencies": r.latencies}
  with cf.ThreadPoolExecutor(threads) as pool:
    return list(pool.map(one, ids))


def _cpu_s(pid: int) -> float:
  """CPU seconds (user + system) of a process and its live children."""
  total = 0.0
  kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                        check=False).stdout.split()
  for p in [pid, *map(int, kids)]:
    try:
      f = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
  return total


def run(exp_dir: pathlib.Path, db_url: str, mode: str, concurrency: int, participants: int, *,
        workers: int, client_procs: int, time_scale: float, http_kind: str) -> dict:
  """One measured run against a fresh server on `db_url`; returns its figures."""
  hu.cli("human", "init", f"--experiment={exp_dir}", f"--db={db_url}")
  server = hu.Server(exp_dir, db_url, workers=workers).start()
  procs = max(1, min(client_procs, concurrency))
  shares = [list(range(k, participants, procs)) for k in range(procs)]
  threads = [concurrency // procs + (k < concurrency % procs) for k in range(procs)]
  stagger = 5.0 * time_scale if mode == "paced" else 0.0
  try:
    cpu0 = _cpu_s(server.proc.pid)
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(procs, mp_context=ctx) as pool:
      futs = [pool.submit(_client_process, server.url, ids, n, mode, time_scale, http_kind,
                          stagger) for ids, n in zip(shares, threads)]
      results = [r for f in futs for r in f.result()]
    wall = time.perf_counter() - t0
    cpu = _cpu_s(server.proc.pid) - cpu0
  finally:
    server.stop()
  lat: dict[str, list[float]] = {}
  errors = 0
  for r in results:
    for kind, s, code in r["latencies"]:
      lat.setdefault(kind, []).append(s)
      errors += code == 0 or code >= 500
  answers = sum(r["acked"] for r in results)
  n_req = sum(len(v) for v in lat.values())
  return {"mode": mode, "concurrency": concurrency, "participants": participants,
          "workers": workers, "client_procs": procs, "http": http_kind,
          "time_scale": time_scale if mode == "paced" else None, "wall_s": round(wall, 2),
          "answers": answers, "answers_per_s": round(answers / wall, 1),
          "answer_p50_ms": round(1000 * pct(lat.get("responses", []), 0.5), 1),
          "answer_p99_ms": round(1000 * pct(lat.get("responses", []), 0.99), 1),
          "answer_max_ms": round(1000 * max(lat.get("responses", [float("nan")])), 1),
          "all_requests": n_req,
          "all_p99_ms": round(1000 * pct([x for v in lat.values() for x in v], 0.99), 1),
          "server_cpu_ms_per_request": round(1000 * cpu / max(1, n_req), 2),
          "errors": errors, "complete": sum(r["status"] == "complete" for r in results)}


def markdown(path: str) -> str:
  """The README/docs table (markdown) of a results JSON written by this benchmark."""
  d = json.loads(pathlib.Path(path).read_text())
  names = {"sqlite": "SQLite (WAL, FULL)", "postgres": "PostgreSQL 15"}
  lines = ["| database | mode | concurrent participants | answers/s | answer p50 | answer p99 | "
           "errors | server CPU per request | durable commits/s of the database alone (peer) "
           "| ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in d["runs"]:
    mode = ("closed loop, no think time" if r["mode"] == "closed"
            else f"paced, reaction times x {r['time_scale']}")
    if r["client_procs"] == 1:
      mode += ", all clients in one process"
    who = (f"{r['concurrency']} ({r['participants']} sessions)" if r["mode"] == "closed"
           else str(r["concurrency"]))
    lines.append(f"| {names.get(r['backend'], r['backend'])} | {mode} | {who} | "
                 f"{r['answers_per_s']} | {r['answer_p50_ms']:.0f} ms | "
                 f"{r['answer_p99_ms']:.0f} ms | {r['errors']} | "
                 f"{r['server_cpu_ms_per_request']} ms | {r['db_commits_per_s']} | "
                 f"{r['ratio_to_db'] if r['mode'] == 'closed' else '—'} |")
  return "\n".join(lines)


def main() -> None:
  """Run the benchmark and write the JSON and a table."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=str(REPO / "docs" / "figures" / "human_load.json"))
  ap.add_argument("--modes", default="closed,paced")
  ap.add_argument("--concurrency", default="50,200")
  ap.add_argument("--participants", default="100,200", help="sessions per closed run")
  ap.add_argument("--backends", default="sqlite,postgres")
  ap.add_argument("--workers", default="1,2", help="server processes per backend")
  ap.add_argument("--client_procs", type=int, default=4)
  ap.add_argument("--time_scale", type=float, default=0.25)
  ap.add_argument("--http", choices=("light", "httpx"), default="light")
  ap.add_argument("--markdown", default=None,
                  help="print the markdown table of this results JSON and exit")
  ap.add_argument("--gil_check", type=int, default=1,
                  help="1: per backend, one more closed run at the first concurrency with every "
                  "client thread in one process (how much the clients' GIL moves the figures)")
  args = ap.parse_args()
  if args.markdown:
    print(markdown(args.markdown))
    return
  conc = [int(x) for x in args.concurrency.split(",")]
  parts = [int(x) for x in args.participants.split(",")]
  backends = args.backends.split(",")
  workers = dict(zip(backends, [int(x) for x in args.workers.split(",")] * len(backends)))
  from cv_jax.testing import human_experiment
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="cvjax_load_"))
  exp = tmp / "exp"
  human_experiment.make(exp, n_tasks=max(parts + conc) // 5 + 10)
  out = {"uptime_before": uptime(), "runs": []}
  pg = None
  print(out["uptime_before"], flush=True)
  k = 0
  for backend in backends:
    if backend == "postgres":
      pg = hu.Postgres()
      if not pg.available:
        print("no PostgreSQL: skipped", flush=True)
        continue
      pg.start()
    plan = [(mode, c, n, args.client_procs) for mode in args.modes.split(",")
            for c, n in zip(conc, parts)]
    if args.gil_check and "closed" in args.modes.split(","):
      plan.append(("closed", conc[0], parts[0], 1))
    for mode, c, n, client_procs in plan:
      k += 1
      db = (f"sqlite:///{tmp / f'load_{k}.db'}" if backend == "sqlite" else pg.new_database())
      raw_db = (f"sqlite:///{tmp / f'raw_{k}.db'}" if backend == "sqlite"
                else pg.new_database())
      raw = raw_commits(raw_db)
      r = run(exp, db, mode, c, n if mode == "closed" else c, workers=workers[backend],
              client_procs=client_procs, time_scale=args.time_scale,
              http_kind=args.http)
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
  print(f"{'backend':<9} {'mode':<7} {'conc':>5} {'procs':>5} {'answers/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'cpu ms/req':>10} {'db commits/s':>13} {'ratio':>6}")
  for r in out["runs"]:
    print(f"{r['backend']:<9} {r['mode']:<7} {r['concurrency']:>5} {r['client_procs']:>5} "
          f"{r['answers_per_s']:>10} "
          f"{r['answer_p50_ms']:>8} {r['answer_p99_ms']:>8} {r['errors']:>6} "
          f"{r['server_cpu_ms_per_request']:>10} {r['db_commits_per_s']:>13} "
          f"{r['ratio_to_db']:>6}")
  print(out["uptime_after"])


if __name__ == "__main__":
  main()
