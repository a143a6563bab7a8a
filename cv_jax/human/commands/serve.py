"""`cv-jax human serve --experiment=DIR --db=URL [--host=127.0.0.1 --port=8000
--admin-token-file=F --workers=1]`: run the study server (uvicorn).

Participants start at `http://HOST:PORT/start?PROLIFIC_PID=...` (or `?pid=...`, MTurk's
parameters). Binds 127.0.0.1 unless told otherwise; no client addresses are logged.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import sys

from absl import flags

from cv_jax.human import store
from cv_jax.human.app import create_app
from cv_jax.human.commands.common import fail, need, one_line_errors

_EXP = flags.DEFINE_string("experiment", None, "the experiment folder the study was made from")
_DB = flags.DEFINE_string("db", "human.db", "database: a SQLite file path or a URL")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "address to bind (0.0.0.0 exposes the server)")
_PORT = flags.DEFINE_integer("port", 8000, "port")
_TOKEN_FILE = flags.DEFINE_string("admin-token-file", None, "file holding the admin bearer "
                                  "token (default: a random token printed at start)")
_WORKERS = flags.DEFINE_integer("workers", 1, "server processes (SQLite: 1, its writer "
                                "commits requests in groups; PostgreSQL: more)")


@one_line_errors("serve")
def main(argv: list[str]) -> None:
  """absl main of `cv-jax human serve`."""
  if len(argv) > 1:
    fail("serve", f"unexpected arguments {argv[1:]}")
  need("serve", experiment=_EXP.value, db=_DB.value)
  if not 0 < _PORT.value < 65536 or _WORKERS.value < 1:
    fail("serve", "--port must be in 1..65535 and --workers >= 1")
  if _TOKEN_FILE.value:
    token = pathlib.Path(_TOKEN_FILE.value).read_text().strip()
    if len(token) < 16:
      fail("serve", f"the admin token in {_TOKEN_FILE.value} is shorter than 16 characters")
  else:
    token = secrets.token_urlsafe(24)
  app = create_app(_EXP.value, _DB.value, admin_token=token)
  if not _TOKEN_FILE.value:
    print(f"admin token (this run only): {token}", file=sys.stderr, flush=True)
  import uvicorn
  url = f"http://{_HOST.value}:{_PORT.value}"
  print(f"serving {url}/start?pid=YOUR_ID  (Prolific: ?PROLIFIC_PID=...&STUDY_ID=...&"
        f"SESSION_ID=...; Ctrl-C stops)", file=sys.stderr, flush=True)
  if _WORKERS.value == 1:
    uvicorn.run(app, host=_HOST.value, port=_PORT.value, access_log=False, log_level="warning")
    return
  del app
  os.environ.update(CV_JAX_HUMAN_EXPERIMENT=os.path.abspath(_EXP.value),
                    CV_JAX_HUMAN_DB=store.normalize_url(_DB.value),
                    CV_JAX_HUMAN_ADMIN_TOKEN=token)
  uvicorn.run("cv_jax.human.app:app_from_env", factory=True, host=_HOST.value, port=_PORT.value,
              workers=_WORKERS.value, access_log=False, log_level="warning")
