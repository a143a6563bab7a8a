"""Helpers of the human-study tests: a synthetic experiment, a study server subprocess on
127.0.0.1, the answers (read server-side from experiment.json and the database), PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

REPO = pathlib.Path(__file__).resolve().parents[1]
ADMIN = "test-admin-token-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def env() -> dict:
  """The environment for subprocesses: this checkout first on PYTHONPATH."""
  paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
  """Run `cv-jax ARGS...` (this checkout) and return the finished process."""
  p = subprocess.run([sys.executable, "-m", "cv_jax.cli", *args], env=env(), cwd=REPO,
                     capture_output=True, text=True, timeout=120, check=False)
  if check:
    assert p.returncode == 0, p.stderr
  return p


class Server:
  """`cv-jax human serve` as a subprocess on 127.0.0.1:<free port>."""

  def __init__(self, experiment: pathlib.Path, db: str, workers: int = 1):
    self.experiment, self.db, self.workers = experiment, db, workers
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.token_file = pathlib.Path(tempfile.mkdtemp()) / "admin_token"
    self.token_file.write_text(ADMIN)
    self.proc = None

  def start(self, timeout: float = 60) -> Server:
    log = open(self.token_file.parent / "server.log", "ab")  # noqa: SIM115 - the server's
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "cv_jax.cli", "human", "serve", f"--experiment={self.experiment}",
         f"--db={self.db}", f"--port={self.port}", f"--admin-token-file={self.token_file}",
         f"--workers={self.workers}"], env=env(), cwd=REPO, stdout=log, stderr=log)
    t0 = time.time()
    while time.time() - t0 < timeout:
      if self.proc.poll() is not None:
        raise RuntimeError("server exited: " + (self.token_file.parent / "server.log")
                           .read_text()[-2000:])
      with contextlib.suppress(httpx.HTTPError):
        if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
          return self
      time.sleep(0.2)
    raise RuntimeError("server did not start")

  def kill9(self) -> None:
    """SIGKILL the server (and its worker processes)."""
    import signal
    if self.proc is None:
      return
    kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                          text=True, check=False).stdout.split()
    for pid in kids:
      with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGKILL)
    self.proc.kill()
    self.proc.wait(10)
    self.proc = None

  def stop(self) -> None:
    if self.proc is not None:
      self.proc.terminate()
      try:
        self.proc.wait(15)
      except subprocess.TimeoutExpired:
        self.kill9()
      self.proc = None


def make_study(root: pathlib.Path, db: str, n_tasks: int = 2, **init_flags) -> pathlib.Path:
  """A synthetic experiment under root/exp (made once per root) and `cv-jax human init`."""
  from cv_jax.testing import human_experiment
  exp = root / "exp"
  if not (exp / "experiment.json").exists():
    human_experiment.make(exp, n_tasks=n_tasks)
  cli("human", "init", f"--experiment={exp}", f"--db={db}",
      *[f"--{k}={v}" for k, v in init_flags.items()])
  return exp


def sqlite_rows(db_file: str, sql: str, args=()) -> list[dict]:
  with contextlib.closing(sqlite3.connect(db_file, timeout=30)) as c:
    c.row_factory = sqlite3.Row
    return [dict(r) for r in c.execute(sql, args)]


def answer_side(doc: dict, db_file: str, session_id: int, phase: str, attempt: int,
                index: int) -> str:
  """The correct side of an entry, computed server-side (experiment.json + DB)."""
  from cv_jax.experiment import trials as trials_lib
  s = sqlite_rows(db_file, "SELECT task_id FROM session WHERE id=?", (session_id,))[0]
  task = next(t for t in doc["tasks"] if t["id"] == s["task_id"])
  if phase == "main":
    entry = task["trials"][index]
  else:
    draw = sqlite_rows(db_file, "SELECT entries_json FROM practice_draw WHERE session_id=? "
                       "AND attempt=?", (session_id, attempt))[0]
    entry = task["practice"][json.loads(draw["entries_json"])[index]]
  return trials_lib.shown_images(doc, task, entry)["correct"]


def postgres_cluster() -> Iterator[str]:
  """Body of a module `postgres` fixture: the URL of a PostgreSQL for the module
  (`CV_JAX_TEST_PG_URL`, else a throwaway cluster), stopped afterwards; skips when neither exists."""
  import pytest
  pg = Postgres()
  if not pg.available:
    pytest.skip("no PostgreSQL (set CV_JAX_TEST_PG_URL or install postgresql-15)")
  yield pg.start()
  pg.stop()


def chromium_path() -> str | None:
  return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_browser() -> Iterator:
  """Body of a module `browser` fixture: one headless Chromium (Debian's, driven by playwright)
  for the module, closed afterwards; skips when no chromium is installed."""
  import pytest
  from playwright.sync_api import sync_playwright
  path = chromium_path()
  if path is None:
    pytest.skip("no chromium installed (Debian package `chromium`)")
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


def served_study(root: pathlib.Path, exp: pathlib.Path, db: str) -> Iterator[dict]:
  """Body of a module study fixture: `cv-jax human serve` of the initialised experiment `exp`
  with database `db`; yields {"exp", "db", "server", "root", "doc" (experiment.json)} and stops
  the server afterwards."""
  server = Server(exp, db).start()
  yield {"exp": exp, "db": db, "server": server, "root": root,
         "doc": json.loads((exp / "experiment.json").read_text())}
  server.stop()


PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")


class Postgres:
  """A PostgreSQL server for the tests: `CV_JAX_TEST_PG_URL` (CI starts one, `.ci/run`), else a
  throwaway cluster from the Debian binaries on 127.0.0.1:<free port>; `available` is False
  when neither exists."""

  def __init__(self):
    self.url = os.environ.get("CV_JAX_TEST_PG_URL")
    self.dir = None
    self._n = 0
    self.available = bool(self.url) or (PG_BIN / "initdb").exists()

  def _as_pg(self, *cmd: str) -> None:
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(pre + list(cmd), check=True, capture_output=True, timeout=120)

  def start(self) -> Postgres:
    if self.url or not self.available:
      return self
    self.dir = pathlib.Path(tempfile.mkdtemp(prefix="cvjax_pg_"))
    data = self.dir / "data"
    if os.geteuid() == 0:
      shutil.chown(self.dir, "postgres", "postgres")
    port = free_port()
    self._as_pg(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.dir / "log"),
                "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {self.dir} "
                "-c max_connections=300 -c fsync=on", "start")
    self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    return self

  def new_database(self) -> str:
    """A fresh empty database; returns its URL."""
    import sqlalchemy as sa
    self._n += 1
    name = f"cvjax_{os.getpid()}_{self._n}_{int(time.time() * 1000) % 10**8}"
    eng = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
      c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return self.url.rsplit("/", 1)[0] + "/" + name

  def stop(self) -> None:
    if self.dir is not None:
      with contextlib.suppress(Exception):
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                    "stop")
      shutil.rmtree(self.dir, ignore_errors=True)
      self.dir = None
