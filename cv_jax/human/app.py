"""The study server: `create_app(experiment_dir, db_url, settings)` -> a FastAPI app.

Endpoints (docs/human.md has request and response bodies; `/openapi.json` is the schema):

* pages: `GET /start` (entry + consent), `GET /run/<token>` (the task), `GET /static/...`,
  `GET /healthz`;
* session API: `POST /api/sessions`, `GET /api/s/<token>`, `GET /s/<token>/img/<sha256>.png`,
  `POST /api/s/<token>/events`, `POST /api/s/<token>/responses`, `POST /api/s/<token>/finish`;
* admin (`Authorization: Bearer <token>`): `GET /admin/status`, `GET /admin/export` (zip),
  `GET /admin/export.sqlite` (SQLite snapshot), `POST /admin/slots/<id>/release`,
  `POST /admin/close`.

`experiment.json` and the stimulus folder are never served; API replies carry
`Cache-Control: no-store`. The app stores no client addresses (run uvicorn with
`access_log=False`, as `cv-jax human serve` does). Imports no JAX.
"""

from __future__ import annotations

import functools
import hmac
import os
import pathlib
import tempfile
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import FileResponse, Response
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from cv_jax.human import assign, store, study
from cv_jax.human import stimuli as stim
from cv_jax.human.settings import Settings
from cv_jax.human.writer import GroupWriter

try:  # optional: faster JSON replies where installed
  import orjson
except ImportError:  # pragma: no cover - depends on the environment
  orjson = None

STATIC = pathlib.Path(__file__).resolve().parent / "static"
_NO_STORE = {"Cache-Control": "no-store"}
_IMG_CACHE = {"Cache-Control": "private, max-age=86400, immutable"}
_TOKEN = Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
_Str = Field(max_length=200)


class JSONResponse(_StarletteJSON):
  """A JSON reply, encoded with orjson when it is installed (else the standard library)."""

  def render(self, content: Any) -> bytes:
    """The body bytes."""
    if orjson is None:
      return super().render(content)
    return orjson.dumps(content)


class StudyNotReady(RuntimeError):
  """The database holds no study for this experiment (message says what to run)."""


# ------------------------------------------------------------------------------ bodies

class SessionCreate(BaseModel):
  """POST /api/sessions: the recruiting platform's ids (after consent)."""
  model_config = ConfigDict(extra="forbid")
  source: Literal["prolific", "mturk", "link", "sim"]
  ids: dict[str, str] = Field(max_length=12, description="PROLIFIC_PID/STUDY_ID/SESSION_ID, "
                              "workerId/assignmentId/hitId/turkSubmitTo, or pid")
  condition: str | None = Field(None, max_length=32)
  client: dict[str, Any] | None = Field(None, max_length=16,
                                        description="window/screen size and user agent only")
  t_client: float | None = None


class SessionCreated(BaseModel):
  """Reply of POST /api/sessions."""
  token: str
  run_url: str
  resumed: bool


class ResponseItem(BaseModel):
  """One answer: the clicked confidence button of one entry."""
  model_config = ConfigDict(extra="forbid")
  phase: Literal["practice", "main"]
  attempt: int = Field(ge=0, le=1000)
  entry_index: int = Field(ge=0, le=100000)
  button_index: int = Field(ge=0, le=5, description="0-2 under the left image (labels 3 2 1), "
                            "3-5 under the right image (labels 1 2 3)")
  rt_ms: float = Field(ge=0, le=1e9)
  t_shown: float | None = Field(None, ge=0, le=1e15)
  t_choice: float | None = Field(None, ge=0, le=1e15)
  t_continue: float | None = Field(None, ge=0, le=1e15)
  page_load_id: str | None = Field(None, max_length=64)


class ResponseBatch(BaseModel):
  """POST /api/s/<token>/responses."""
  model_config = ConfigDict(extra="forbid")
  responses: list[ResponseItem] = Field(min_length=1, max_length=64)


class EventItem(BaseModel):
  """One client event (epoch-ms client time)."""
  model_config = ConfigDict(extra="forbid")
  page_load_id: str = Field(min_length=1, max_length=64)
  seq: int = Field(ge=0, le=10_000_000)
  kind: Literal[study.EVENT_KINDS]  # type: ignore[valid-type]
  t_client: float | None = Field(None, ge=0, le=1e15)
  payload: dict[str, Any] | None = Field(None, max_length=32)


class EventBatch(BaseModel):
  """POST /api/s/<token>/events."""
  model_config = ConfigDict(extra="forbid")
  events: list[EventItem] = Field(min_length=1, max_length=256)


class FinishBody(BaseModel):
  """POST /api/s/<token>/finish."""
  model_config = ConfigDict(extra="forbid")
  feedback: str = Field("", max_length=5000)


# ------------------------------------------------------------------------------ app

def load_study(engine: sa.Engine, exp: stim.Experiment) -> tuple[int, Settings]:
  """The study id and stored settings; StudyNotReady if absent or for another experiment."""
  try:
    with store.read_tx(engine) as conn:
      row = store.get_study(conn)
  except sa.exc.OperationalError:
    row = None
  if row is None:
    raise StudyNotReady("the database holds no study; run `cv-jax human init "
                        "--experiment=DIR --db=URL` first")
  if row.experiment_sha256 != exp.sha256:
    raise StudyNotReady(f"the study was created from another experiment.json (sha256 "
                        f"{row.experiment_sha256[:12]}..., this one {exp.sha256[:12]}...); "
                        "serve the experiment it was created from, or init a new database")
  return row.id, Settings.from_json(row.settings_json)


def create_app(experiment_dir: str | os.PathLike, db_url: str,
               settings: Settings | None = None, *, admin_token: str | None = None) -> FastAPI:
  """The study's FastAPI app.

  Args:
    experiment_dir: the folder with `experiment.json` (the one the study was created from).
    db_url: the database (a SQLAlchemy URL or a SQLite file path).
    settings: override the settings stored at `init` (None: use them).
    admin_token: the admin bearer token; None reads `CV_JAX_HUMAN_ADMIN_TOKEN`; empty or unset
      means every admin request gets 401.
  """
  exp = stim.load(experiment_dir)
  engine = store.make_engine(db_url)
  study_id, stored = load_study(engine, exp)
  cfg = settings or stored
  token_ref = admin_token if admin_token is not None else os.environ.get(
      "CV_JAX_HUMAN_ADMIN_TOKEN", "")

  app = FastAPI(title="cv_jax human study", version="1.0.0", docs_url=None, redoc_url=None,
                description="Participant and admin API of a cv_jax human study (docs/human.md).")
  app.state.engine, app.state.experiment, app.state.settings = engine, exp, cfg
  app.mount("/static", StaticFiles(directory=STATIC), name="static")

  @functools.cache
  def task_hashes(task_id: str) -> frozenset[str]:
    return frozenset(stim.task_hashes(exp, exp.tasks[task_id]))

  # One writer thread per process commits the write requests in groups (writer.py): a
  # savepoint per request, one COMMIT (fsync) per group; a StudyError with `keep` (an expiry
  # found while refusing) keeps its writes.
  writer = GroupWriter(engine, keeps=lambda e: isinstance(e, study.StudyError) and e.keep)
  app.state.writer = writer

  def write(fn, *args):
    return writer.run(lambda conn: fn(conn, exp, cfg, *args, store.now_ms()))

  async def awrite(fn, *args):
    """`write` from an async endpoint: awaits the writer without blocking the event loop."""
    return await writer.arun(lambda conn: fn(conn, exp, cfg, *args, store.now_ms()))

  def fail(e: study.StudyError) -> JSONResponse:
    return JSONResponse({"error": e.message, **e.extra}, status_code=e.status, headers=_NO_STORE)

  def admin(authorization: str | None = Header(None)) -> None:
    given = (authorization or "")
    ok = bool(token_ref) and given.startswith("Bearer ") and hmac.compare_digest(
        given[7:].encode(), token_ref.encode())
    if not ok:
      raise _Unauthorized()

  @app.exception_handler(_Unauthorized)
  def _unauth(_req: Request, _e: _Unauthorized) -> JSONResponse:
    return JSONResponse({"error": "admin token required (Authorization: Bearer <token>)"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer", **_NO_STORE})

  @app.get("/healthz")
  def healthz() -> dict[str, Any]:
    """Liveness: the database answers."""
    with store.read_tx(engine) as conn:
      conn.execute(sa.text("SELECT 1"))
    return {"ok": True}

  @app.get("/start", response_class=Response)
  def start_page() -> Response:
    """The entry page (Prolific / MTurk / pid link parameters in the query string)."""
    return _page("start.html", cfg)

  @app.get("/run/{token}", response_class=Response)
  def run_page(token: str = _TOKEN) -> Response:
    """The task page of a session."""
    return _page("run.html", cfg)

  @app.post("/api/sessions", status_code=201, response_model=SessionCreated,
            responses={200: {"model": SessionCreated}, 400: {}, 403: {}, 409: {}, 410: {}})
  async def create_session(body: SessionCreate) -> JSONResponse:
    """Start (201) or resume (200) the participant's session."""
    client = {k: v for k, v in (body.client or {}).items()
              if k in ("user_agent", "screen", "window", "window_ok")}
    try:
      status, out = await awrite(lambda c, e, s, now: study.start_session(
          c, e, s, study_id, body.source, body.ids, now, condition=body.condition,
          client=client, t_client=body.t_client))
    except study.StudyError as e:
      return fail(e)
    return JSONResponse(out, status_code=status, headers=_NO_STORE)

  @app.get("/api/s/{token}", responses={404: {}, 410: {}})
  async def get_state(token: str = _TOKEN) -> JSONResponse:
    """The session's state and its remaining entries (image URLs only)."""
    try:
      return JSONResponse(await awrite(study.state, token), headers=_NO_STORE)
    except study.StudyError as e:
      return fail(e)

  @app.get("/s/{token}/img/{digest}.png", response_class=Response, responses={404: {}})
  def image(token: str = _TOKEN,
            digest: str = Path(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
            ) -> Response:
    """An image of the session's own task (404 for any other)."""
    try:
      with store.read_tx(engine) as conn:
        path = study.image_file(conn, exp, cfg, token, digest, task_hashes)
    except study.StudyError as e:
      return fail(e)
    return FileResponse(path, media_type="image/png", headers=_IMG_CACHE)

  @app.post("/api/s/{token}/responses", responses={404: {}, 409: {}, 410: {}})
  async def post_responses(body: ResponseBatch, token: str = _TOKEN) -> JSONResponse:
    """Store answers, exactly once per (phase, attempt, entry_index)."""
    items = [r.model_dump() for r in body.responses]
    try:
      status, out = await awrite(study.post_responses, token, items)
    except study.StudyError as e:
      return fail(e)
    return JSONResponse(out, status_code=status, headers=_NO_STORE)

  @app.post("/api/s/{token}/events", responses={404: {}, 410: {}})
  async def post_events(body: EventBatch, token: str = _TOKEN) -> JSONResponse:
    """Store client events, idempotent by (page_load_id, seq)."""
    items = [e.model_dump() for e in body.events]
    try:
      return JSONResponse(await awrite(study.post_events, token, items), headers=_NO_STORE)
    except study.StudyError as e:
      return fail(e)

  @app.post("/api/s/{token}/finish", responses={404: {}, 409: {}, 410: {}})
  async def finish(body: FinishBody, token: str = _TOKEN) -> JSONResponse:
    """Complete the session once every main answer is stored; returns the completion."""
    try:
      return JSONResponse(await awrite(study.finish, token, body.feedback), headers=_NO_STORE)
    except study.StudyError as e:
      return fail(e)

  @app.get("/admin/status", dependencies=[Depends(admin)])
  def admin_status() -> JSONResponse:
    """Slots per condition x status, sessions per state, anomalies per kind."""
    with store.read_tx(engine) as conn:
      return JSONResponse(status_counts(conn), headers=_NO_STORE)

  @app.get("/admin/export", dependencies=[Depends(admin)], response_class=Response)
  def admin_export() -> Response:
    """The export (human_experiment_spec §3.8) as a zip, read in one transaction."""
    from cv_jax.human import export
    tmp = tempfile.mkdtemp(prefix="cvjax_export_")
    out = pathlib.Path(tmp) / "export.zip"
    export.export(engine, out)
    return FileResponse(out, media_type="application/zip", filename="human_export.zip",
                        headers=_NO_STORE, background=BackgroundTask(_rmtree, tmp))

  @app.get("/admin/export.sqlite", dependencies=[Depends(admin)], response_class=Response)
  def admin_export_sqlite() -> Response:
    """A consistent copy of the SQLite database (`VACUUM INTO`); 404 on PostgreSQL."""
    if not store.is_sqlite(engine):
      return JSONResponse({"error": "only for SQLite; use pg_dump"}, status_code=404)
    tmp = tempfile.mkdtemp(prefix="cvjax_export_")
    out = pathlib.Path(tmp) / "human.sqlite"
    raw = engine.raw_connection()  # outside any transaction (VACUUM refuses one)
    try:
      raw.driver_connection.execute("VACUUM INTO ?", (str(out),))
    finally:
      raw.close()
    return FileResponse(out, media_type="application/vnd.sqlite3", filename="human.sqlite",
                        headers=_NO_STORE, background=BackgroundTask(_rmtree, tmp))

  @app.post("/admin/slots/{slot_id}/release", dependencies=[Depends(admin)])
  def admin_release(slot_id: int = Path(ge=0, le=2**31)) -> JSONResponse:
    """Reopen a leased slot now (its session becomes abandoned, data kept)."""
    def op(conn, *_):
      row = conn.execute(sa.select(store.slot).where(store.slot.c.id == slot_id)).first()
      if row is None:
        return None
      assign.release(conn, row.id, row.lease_session_id)
      return conn.execute(sa.select(store.slot.c.status).where(store.slot.c.id == slot_id)
                          ).scalar_one()
    status = write(op)
    if status is None:
      return JSONResponse({"error": "unknown slot"}, status_code=404)
    return JSONResponse({"slot": slot_id, "status": status}, headers=_NO_STORE)

  @app.post("/admin/close", dependencies=[Depends(admin)])
  def admin_close() -> JSONResponse:
    """Close the study: no new sessions (running ones may finish)."""
    write(lambda conn, *_: conn.execute(store.study.update().values(closed=True)))
    return JSONResponse({"closed": True}, headers=_NO_STORE)

  return app


class _Unauthorized(Exception):
  pass


def _rmtree(path: str) -> None:
  import shutil
  shutil.rmtree(path, ignore_errors=True)


def _page(name: str, settings: Settings) -> Response:
  html = (STATIC / name).read_text()
  html = html.replace("<!--CONSENT-->", settings.consent_html)
  return Response(html, media_type="text/html; charset=utf-8", headers=_NO_STORE)


def status_counts(conn: sa.Connection) -> dict[str, Any]:
  """Counts for `/admin/status` and `cv-jax human status`."""
  s, se, a = store.slot, store.session, store.anomaly
  slots: dict[str, dict[str, int]] = {}
  for c, st, n in conn.execute(sa.select(s.c.condition, s.c.status, sa.func.count())
                               .group_by(s.c.condition, s.c.status)):
    slots.setdefault(c, {})[st] = int(n)
  sessions = {st: int(n) for st, n in conn.execute(
      sa.select(se.c.state, sa.func.count()).group_by(se.c.state))}
  passed = {str(p).lower(): int(n) for p, n in conn.execute(
      sa.select(se.c.passed, sa.func.count()).where(se.c.state == "complete")
      .group_by(se.c.passed))}
  anomalies = {k: int(n) for k, n in conn.execute(
      sa.select(a.c.kind, sa.func.count()).group_by(a.c.kind))}
  n_resp = conn.execute(sa.select(sa.func.count()).select_from(store.response)).scalar_one()
  n_part = conn.execute(sa.select(sa.func.count()).select_from(store.participant)).scalar_one()
  return {"slots": slots, "sessions": sessions, "completed_passed": passed,
          "anomalies": anomalies, "participants": int(n_part), "responses": int(n_resp)}


def app_from_env() -> FastAPI:
  """App factory for `uvicorn --factory` (several worker processes): reads
  `CV_JAX_HUMAN_EXPERIMENT`, `CV_JAX_HUMAN_DB` and `CV_JAX_HUMAN_ADMIN_TOKEN`."""
  return create_app(os.environ["CV_JAX_HUMAN_EXPERIMENT"], os.environ["CV_JAX_HUMAN_DB"])
