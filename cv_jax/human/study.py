"""The study's operations on the database: start or resume a session, its state, answers, events,
finish. Pure functions of (connection, experiment, settings, request values); `app.py` is the
HTTP layer around them. Every function that writes runs inside the caller's `store.write_tx`.

Rules (human_experiment_spec §3.2-3.4, §3.11):
* a participant (platform id) has at most one session per study, across all conditions;
* answers are keyed (phase, attempt, entry_index) and stored once: a retry with the same payload
  is acknowledged as `duplicate`, a different second answer is refused (`conflict`) and logged
  as an anomaly, never overwriting the first;
* `max_side`, `correct` and `mode` come from `experiment.json`, never from the client;
* the completion code is issued only once every main entry is stored.

Imports no JAX.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as _pg
from sqlalchemy.dialects import sqlite as _sqlite

from cv_jax.human import assign, store
from cv_jax.human import stimuli as stim
from cv_jax.human.settings import Settings

SOURCES = {"prolific": "PROLIFIC_PID", "mturk": "workerId", "link": "pid", "sim": "pid"}
"""Recruiting source -> the query parameter holding the participant's id."""
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
CONFIDENCE_LABELS = (3, 2, 1, 1, 2, 3)
"""The label under button 0..5: the left image's row reads 3 2 1, the right image's 1 2 3."""
EVENT_KINDS = ("page_load", "consent", "window_check", "preload_done", "run_start",
               "instructions_start", "instructions_end", "fullscreen_enter", "fullscreen_exit",
               "fullscreen_failed", "visibility_hidden", "visibility_visible",
               "practice_block_start", "practice_block_end", "resume", "trial_continue",
               "offline", "online", "feedback", "submit")
ACTIVE_STATES = ("instructions", "practice", "main", "feedback")


# Statements of the request paths, built once (building a Core statement per request cost more
# CPU than running it); the session is read together with its slot's lease in one query.
_se, _sl, _r, _ev = store.session, store.slot, store.response, store.event
_SESSION_BY_TOKEN = (
    sa.select(_se, _sl.c.status.label("slot_status"),
              _sl.c.lease_session_id.label("slot_lease_session_id"),
              _sl.c.lease_expires_at.label("slot_lease_expires_at"))
    .join_from(_se, _sl, _sl.c.id == _se.c.slot_id)
    .where(_se.c.token_sha256 == sa.bindparam("h")))
_SLOT_BY_ID = sa.select(_sl).where(_sl.c.id == sa.bindparam("id"))
_STORED_ANSWER = sa.select(_r.c.button_index, _r.c.rt_ms, _r.c.t_shown, _r.c.t_choice,
                           _r.c.correct).where(
    _r.c.session_id == sa.bindparam("sid"), _r.c.phase == sa.bindparam("phase"),
    _r.c.attempt == sa.bindparam("attempt"), _r.c.entry_index == sa.bindparam("idx"))
_N_MAIN = sa.select(sa.func.count()).select_from(_r).where(
    _r.c.session_id == sa.bindparam("sid"), _r.c.phase == "main")


def _insert_new(table: sa.Table, keys: tuple[str, ...]) -> dict[str, Any]:
  """Per dialect: INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING id (no row: it existed)."""
  return {name: mod.insert(table).on_conflict_do_nothing(index_elements=list(keys))
          .returning(table.c.id) for name, mod in (("sqlite", _sqlite), ("postgresql", _pg))}


_INSERT_ANSWER = _insert_new(_r, ("session_id", "phase", "attempt", "entry_index"))
_INSERT_EVENT = _insert_new(_ev, ("session_id", "page_load_id", "seq"))


class StudyError(Exception):
  """A request the study refuses: `status` is the HTTP status, `message` says why.

  `keep=True`: the transaction's writes so far must be committed anyway (an expiry found while
  handling the request: the session is marked abandoned, then the request is refused).
  """

  def __init__(self, status: int, message: str, *, keep: bool = False, **extra: Any):
    super().__init__(message)
    self.status, self.message, self.extra, self.keep = status, message, extra, keep


def token_hash(token: str) -> str:
  """sha256 hex of a session token (only the hash is stored)."""
  return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
  """A fresh 192-bit session token (URL-safe)."""
  return secrets.token_urlsafe(24)


def _code() -> str:
  alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
  return "".join(secrets.choice(alphabet) for _ in range(10))


def anomaly(conn: sa.Connection, session_id: int | None, kind: str, payload: Any,
            now: int) -> None:
  """Log an anomaly row."""
  conn.execute(store.anomaly.insert().values(session_id=session_id, kind=kind,
                                             payload_json=json.dumps(payload, sort_keys=True),
                                             t_server=now))


# ------------------------------------------------------------------------------ study

def init_study(engine: sa.Engine, exp: stim.Experiment, settings: Settings) -> tuple[int, bool]:
  """Create the tables, the study and one slot per task; returns (study id, created).

  An existing study of the same experiment is kept as it is (created False); one of another
  experiment is an error (ValueError naming both checksums).
  """
  store.create(engine)
  with store.write_tx(engine) as conn:
    row = store.get_study(conn)
    if row is not None:
      if row.experiment_sha256 != exp.sha256:
        raise ValueError(f"the database already holds a study of another experiment.json "
                         f"(sha256 {row.experiment_sha256[:12]}..., this one "
                         f"{exp.sha256[:12]}...); use a new --db")
      return row.id, False
    sid = conn.execute(store.study.insert().values(
        experiment_sha256=exp.sha256, schema_version=store.SCHEMA_VERSION,
        settings_json=settings.to_json(), created_at=store.now_ms(), closed=False)
    ).inserted_primary_key[0]
    assign.create_slots(conn, sid, exp.doc["tasks"])
  return sid, True


def block(engine: sa.Engine, external_ids: Sequence[str]) -> int:
  """Add participant ids (earlier studies' participants) to the blocklist; returns how many
  were new."""
  ids = sorted({i.strip() for i in external_ids if i.strip()})
  with store.write_tx(engine) as conn:
    row = store.get_study(conn)
    if row is None:
      raise ValueError("the database holds no study; run `cv-jax human init` first")
    bl = store.blocklist
    have = set(conn.execute(sa.select(bl.c.external_id).where(bl.c.study_id == row.id))
               .scalars())
    new = [i for i in ids if i not in have]
    if new:
      conn.execute(bl.insert(), [{"study_id": row.id, "external_id": i} for i in new])
  return len(new)


# ------------------------------------------------------------------------------ sessions

def start_session(conn: sa.Connection, exp: stim.Experiment, settings: Settings, study_id: int,
                  source: str, ids: Mapping[str, str], now: int, *,
                  condition: str | None = None, client: Mapping[str, Any] | None = None,
                  t_client: float | None = None) -> tuple[int, dict[str, Any]]:
  """Create (201) or resume (200) the participant's session; returns (status, body).

  Raises StudyError 400 (bad ids, MTurk preview), 403 (blocked), 409 (already completed),
  410 (no open slot, study closed, or the session expired).
  """
  if source not in SOURCES:
    raise StudyError(400, f"unknown source {source!r}; use one of {sorted(SOURCES)}")
  key = SOURCES[source]
  external_id = str(ids.get(key) or "").strip()
  if not external_id:
    raise StudyError(400, f"source {source} needs the participant id parameter {key}")
  if source == "mturk" and ids.get("assignmentId") == MTURK_PREVIEW:
    raise StudyError(400, "MTurk preview: accept the HIT first (nothing was claimed)")
  if condition is not None and condition not in {t["condition"] for t in exp.doc["tasks"]}:
    raise StudyError(400, f"unknown condition {condition!r}")
  p, se = store.participant, store.session
  blocked = conn.execute(sa.select(store.blocklist).where(
      store.blocklist.c.study_id == study_id,
      store.blocklist.c.external_id == external_id)).first()
  prow = conn.execute(sa.select(p).where(p.c.study_id == study_id,
                                         p.c.external_id == external_id)).first()
  if blocked is not None or (prow is not None and prow.blocked):
    raise StudyError(403, "not eligible: this participant id took part in an earlier study")
  token = new_token()
  if prow is not None:
    srow = conn.execute(sa.select(se).where(se.c.participant_id == prow.id)).first()
    if srow is not None:
      srow = check_active(conn, exp, settings, srow, now, allow_complete=True)
      if srow.state == "complete":
        raise StudyError(409, "already participated: this participant id completed the study")
      conn.execute(se.update().where(se.c.id == srow.id).values(token_sha256=token_hash(token)))
      anomaly(conn, srow.id, "second_start", {"source": source}, now)
      return 200, {"token": token, "run_url": f"/run/{token}", "resumed": True}
  study_row = conn.execute(sa.select(store.study).where(store.study.c.id == study_id)).one()
  if study_row.closed:
    raise StudyError(410, "the study is closed")
  slot = assign.claim(conn, study_id, now, settings.lease_s, condition)
  if slot is None:
    raise StudyError(410, "no open place in the study right now; please try again later")
  if prow is None:
    pid = conn.execute(p.insert().values(
        study_id=study_id, external_id=external_id, source=source,
        ids_json=json.dumps(dict(ids), sort_keys=True), blocked=False, created_at=now)
    ).inserted_primary_key[0]
  else:
    pid = prow.id
  sid = conn.execute(se.insert().values(
      token_sha256=token_hash(token), participant_id=pid, slot_id=slot.id,
      condition=slot.condition, task_id=slot.task_id, state="instructions", started_at=now,
      client_json=json.dumps(dict(client or {}), sort_keys=True))).inserted_primary_key[0]
  conn.execute(store.slot.update().where(store.slot.c.id == slot.id).values(lease_session_id=sid))
  conn.execute(store.event.insert().values(
      session_id=sid, page_load_id="start", seq=0, kind="consent", t_client=t_client,
      t_server=now, payload_json=json.dumps({"source": source})))
  return 201, {"token": token, "run_url": f"/run/{token}", "resumed": False}


def find_session(conn: sa.Connection, token: str) -> sa.Row:
  """The session of a token (with its slot's `slot_status`, `slot_lease_session_id`,
  `slot_lease_expires_at`); StudyError 404 for an unknown one."""
  row = conn.execute(_SESSION_BY_TOKEN, {"h": token_hash(token)}).first()
  if row is None:
    raise StudyError(404, "unknown session")
  return row


def check_active(conn: sa.Connection, exp: stim.Experiment, settings: Settings, row: sa.Row,
                 now: int, *, allow_complete: bool = False) -> sa.Row:
  """Expire the session if its lease or maximum age ran out; refuse inactive sessions (410).

  Must run inside a write transaction when the session may expire.
  """
  if row.state == "complete":
    if allow_complete:
      return row
    raise StudyError(409, "this session is complete")
  if row.state == "abandoned":
    raise StudyError(410, "this session has expired; its answers are kept")
  if "slot_status" in row._fields:  # read with the session (find_session)
    status, lease_sid, expires = (row.slot_status, row.slot_lease_session_id,
                                  row.slot_lease_expires_at)
  else:
    slot = conn.execute(_SLOT_BY_ID, {"id": row.slot_id}).one()
    status, lease_sid, expires = slot.status, slot.lease_session_id, slot.lease_expires_at
  too_old = (settings.resume_max_age_s is not None
             and now - row.started_at > settings.resume_max_age_s * 1000)
  lost = lease_sid != row.id or status != assign.LEASED
  if too_old or lost or (expires is not None and expires < now):
    if lease_sid == row.id:
      assign.release(conn, row.slot_id, row.id)
    else:
      conn.execute(store.session.update().where(store.session.c.id == row.id)
                   .values(state="abandoned"))
    raise StudyError(410, "this session has expired; its answers are kept", keep=True)
  return row


def _task(exp: stim.Experiment, row: sa.Row) -> dict:
  return exp.tasks[row.task_id]


def _answered(conn: sa.Connection, session_id: int) -> list[sa.Row]:
  r = store.response
  return conn.execute(sa.select(r.c.phase, r.c.attempt, r.c.entry_index, r.c.correct)
                      .where(r.c.session_id == session_id)).all()


def _draws(conn: sa.Connection, session_id: int) -> dict[int, list[int]]:
  d = store.practice_draw
  rows = conn.execute(sa.select(d.c.attempt, d.c.entries_json)
                      .where(d.c.session_id == session_id)).all()
  return {int(a): json.loads(e) for a, e in rows}


def _set_state(conn: sa.Connection, session_id: int, state: str) -> None:
  se = store.session
  conn.execute(se.update().where(se.c.id == session_id, se.c.state.in_(ACTIVE_STATES))
               .values(state=state))


def advance(conn: sa.Connection, exp: stim.Experiment, settings: Settings, row: sa.Row,
            now: int) -> str:
  """Move the session's state forward as far as its stored data allows; returns the state.

  practice: the current block complete and all correct (or the last allowed block done) ->
  main, else the next block is drawn; main: every entry answered -> feedback.
  """
  task, state = _task(exp, row), row.state
  if state == "practice":
    if not stim.has_practice(task, settings):
      state = "main"
    else:
      draws = _draws(conn, row.id)
      if not draws:
        _draw(conn, row.id, task, 1, settings)
      else:
        a = max(draws)
        got = {e: c for p, at, e, c in _answered(conn, row.id) if p == "practice" and at == a}
        if len(got) == len(draws[a]):
          if all(got.values()) or a >= settings.practice_max_attempts:
            state = "main"
          else:
            _draw(conn, row.id, task, a + 1, settings)
  if state == "main":
    if conn.execute(_N_MAIN, {"sid": row.id}).scalar_one() >= len(task["trials"]):
      state = "feedback"
  if state != row.state:
    _set_state(conn, row.id, state)
  return state


def _draw(conn: sa.Connection, session_id: int, task: dict, attempt: int,
          settings: Settings) -> None:
  entries = stim.practice_draw(task, attempt, settings)
  d = store.practice_draw
  if conn.execute(sa.select(d.c.id).where(d.c.session_id == session_id,
                                          d.c.attempt == attempt)).first() is None:
    conn.execute(d.insert().values(session_id=session_id, attempt=attempt,
                                   entries_json=json.dumps(entries)))


def _completion(exp: stim.Experiment, settings: Settings, conn: sa.Connection,
                row: sa.Row) -> dict[str, Any]:
  prow = conn.execute(sa.select(store.participant)
                      .where(store.participant.c.id == row.participant_id)).one()
  ids = json.loads(prow.ids_json)
  code = row.completion_code
  if prow.source == "prolific" and settings.prolific_completion_code:
    return {"kind": "prolific", "code": code,
            "redirect": f"{settings.prolific_complete_url}?cc={settings.prolific_completion_code}"}
  if prow.source == "mturk":
    target = urlparse(str(ids.get("turkSubmitTo", "")))
    if target.scheme == "https" and (target.hostname or "").endswith(".mturk.com"):
      return {"kind": "mturk", "code": code,
              "submit_url": f"https://{target.hostname}/mturk/externalSubmit",
              "assignmentId": str(ids.get("assignmentId", ""))}
  return {"kind": "code", "code": code}


def state(conn: sa.Connection, exp: stim.Experiment, settings: Settings, token: str,
          now: int) -> dict[str, Any]:
  """The page's view of its session (GET /api/s/<token>): no answers, modes or paths.

  Creates the next practice draw when one is due (so run it in a write transaction).
  """
  row = find_session(conn, token)
  row = check_active(conn, exp, settings, row, now, allow_complete=True)
  task = _task(exp, row)
  body: dict[str, Any] = {
      "state": row.state, "condition": row.condition,
      "task": exp.doc.get("task", "occlusion"),
      "window": {"width": settings.min_width, "height": settings.min_height},
      "continue_delay_ms": settings.feedback_delay_ms,
      "practice_attempts_limit": settings.practice_max_attempts,
      "has_practice": stim.has_practice(task, settings),
      "run_started": False, "examples": [], "practice": None,
      "main": {"total": len(task["trials"]), "answered": 0, "entries": []}, "images": [],
      "completion": None}
  if row.state == "complete":
    body["completion"] = _completion(exp, settings, conn, row)
    body["main"]["answered"] = len(task["trials"])
    return body
  st = advance(conn, exp, settings, row, now)
  body["state"] = st
  ev = store.event
  body["run_started"] = conn.execute(sa.select(ev.c.id).where(
      ev.c.session_id == row.id, ev.c.kind == "run_start").limit(1)).first() is not None
  images: list[str] = []

  def desc(entry, phase, attempt, index):
    v = stim.view(exp, task, entry)
    images.extend(stim.view_hashes(v))
    return stim.descriptor(v, token, phase, attempt, index)

  answered = _answered(conn, row.id)
  if st == "instructions":
    body["examples"] = [desc(e, "example", 0, i)
                        for i, e in enumerate(stim.instruction_examples(exp, task))]
  if st == "practice":
    draws = _draws(conn, row.id)
    a = max(draws)
    got = {e: bool(c) for p, at, e, c in answered if p == "practice" and at == a}
    body["practice"] = {"attempt": a, "answered": len(got),
                        "entries": [desc(task["practice"][k], "practice", a, i)
                                    for i, k in enumerate(draws[a]) if i not in got]}
  if st in ("instructions", "practice"):
    for e in task.get("practice", []) if stim.has_practice(task, settings) else []:
      images.extend(stim.view_hashes(stim.view(exp, task, e)))
  if st in ("instructions", "practice", "main"):
    done = {e for p, _, e, _ in answered if p == "main"}
    body["main"]["answered"] = len(done)
    body["main"]["entries"] = [desc(e, "main", 0, i) for i, e in enumerate(task["trials"])
                               if i not in done]
  body["images"] = [stim.image_url(token, h) for h in sorted(set(images))]
  return body


# ------------------------------------------------------------------------------ answers

def _key(phase: str, attempt: int, index: int) -> str:
  return f"{phase}:{attempt}:{index}"


def post_responses(conn: sa.Connection, exp: stim.Experiment, settings: Settings, token: str,
                   items: Sequence[Mapping[str, Any]], now: int) -> tuple[int, dict[str, Any]]:
  """Store a batch of answers (POST /api/s/<token>/responses); returns (status, body).

  Each item: {phase, attempt, entry_index, button_index, rt_ms, t_shown, t_choice,
  page_load_id}. The reply lists per item `{key, status}` with status stored | duplicate |
  conflict | refused (and `correct` for practice items); the HTTP status is 409 if any item
  conflicted or was refused, else 200.
  """
  row = check_active(conn, exp, settings, find_session(conn, token), now)
  task = _task(exp, row)
  practice_on = stim.has_practice(task, settings)
  draws = _draws(conn, row.id) if any(it["phase"] == "practice" for it in items) else {}
  insert = _INSERT_ANSWER[conn.dialect.name]
  results, bad = [], False
  for it in items:
    phase, attempt, idx = it["phase"], int(it["attempt"]), int(it["entry_index"])
    key = _key(phase, attempt, idx)
    entry = None
    if phase == "main" and attempt == 0 and 0 <= idx < len(task["trials"]):
      if row.state in ("main", "feedback") or (not practice_on and row.state != "instructions"):
        entry = task["trials"][idx]
    elif phase == "practice" and practice_on and attempt in draws and \
        0 <= idx < len(draws[attempt]) and attempt == max(draws) and row.state == "practice":
      entry = task["practice"][draws[attempt][idx]]
    button = int(it["button_index"])
    payload = {"button_index": button, "rt_ms": float(it["rt_ms"]),
               "t_shown": it.get("t_shown"), "t_choice": it.get("t_choice")}
    if entry is not None:  # insert unless the key is stored already (one statement)
      v = stim.view(exp, task, entry)
      chosen = "left" if button < 3 else "right"
      correct = chosen == v["max_side"]
      new = conn.execute(insert, {
          "session_id": row.id, "phase": phase, "attempt": attempt, "entry_index": idx,
          "trial_id": v["trial_id"], "mode": v["mode"], "max_side": v["max_side"],
          "shown_left": v["left"], "shown_right": v["right"], "chosen_side": chosen,
          "choice": "max" if correct else "min", "correct": correct,
          "confidence": CONFIDENCE_LABELS[button], "button_index": button,
          "rt_ms": payload["rt_ms"], "t_shown": payload["t_shown"],
          "t_choice": payload["t_choice"], "t_continue": it.get("t_continue"),
          "page_load_id": it.get("page_load_id"), "t_server": now,
          "raw_json": json.dumps(dict(it), sort_keys=True)}).first()
      if new is not None:
        res = {"key": key, "status": "stored"}
        if phase == "practice":
          res["correct"] = correct
        results.append(res)
        continue
    existing = conn.execute(_STORED_ANSWER, {"sid": row.id, "phase": phase,
                                             "attempt": attempt, "idx": idx}).first()
    if existing is None:  # not stored and not answerable now
      anomaly(conn, row.id, "refused_response", {"key": key, "state": row.state}, now)
      results.append({"key": key, "status": "refused"})
      bad = True
      continue
    same = (existing.button_index == button and abs(existing.rt_ms - payload["rt_ms"]) < 1e-6
            and existing.t_shown == payload["t_shown"]
            and existing.t_choice == payload["t_choice"])
    res = {"key": key, "status": "duplicate" if same else "conflict"}
    if not same:
      anomaly(conn, row.id, "conflicting_response",
              {"key": key, "stored": existing.button_index, "sent": dict(it)}, now)
      bad = True
    if phase == "practice":
      res["correct"] = bool(existing.correct)
    results.append(res)
  if row.state == "main":
    advance(conn, exp, settings, row, now)
  return (409 if bad else 200), {"results": results}


def post_events(conn: sa.Connection, exp: stim.Experiment, settings: Settings, token: str,
                items: Sequence[Mapping[str, Any]], now: int) -> dict[str, Any]:
  """Store a batch of events, idempotent by (page_load_id, seq); returns {"stored": n, ...}.

  `instructions_end` moves the session from instructions to practice (or main).
  """
  row = check_active(conn, exp, settings, find_session(conn, token), now, allow_complete=True)
  insert = _INSERT_EVENT[conn.dialect.name]
  stored = dup = 0
  for it in items:
    plid, seq = str(it["page_load_id"]), int(it["seq"])
    new = conn.execute(insert, {
        "session_id": row.id, "page_load_id": plid, "seq": seq, "kind": it["kind"],
        "t_client": it.get("t_client"), "t_server": now,
        "payload_json": json.dumps(it.get("payload") or {}, sort_keys=True)}).first()
    if new is None:  # (page_load_id, seq) stored already
      dup += 1
      continue
    stored += 1
    if it["kind"] == "instructions_end" and row.state == "instructions":
      nxt = "practice" if stim.has_practice(_task(exp, row), settings) else "main"
      _set_state(conn, row.id, nxt)
      row = find_session(conn, token)
  return {"stored": stored, "duplicates": dup}


def _rows(conn: sa.Connection, table: sa.Table, session_id: int) -> list[dict[str, Any]]:
  q = sa.select(table).where(table.c.session_id == session_id).order_by(table.c.id)
  return [dict(r._mapping) for r in conn.execute(q)]


def finish(conn: sa.Connection, exp: stim.Experiment, settings: Settings, token: str,
           feedback: str, now: int) -> dict[str, Any]:
  """Complete the session (POST /finish): verify every main answer is stored, evaluate the
  exclusion checks, close the slot's lease, issue the completion. Idempotent.

  Raises StudyError 409 with `missing` (the number of main entries not stored yet).
  """
  row = check_active(conn, exp, settings, find_session(conn, token), now, allow_complete=True)
  if row.state == "complete":
    return _completion(exp, settings, conn, row)
  task = _task(exp, row)
  n_main = sum(1 for p, *_ in _answered(conn, row.id) if p == "main")
  if n_main < len(task["trials"]):
    raise StudyError(409, "not every answer has reached the server yet",
                     missing=len(task["trials"]) - n_main)
  ev = store.event
  if feedback and conn.execute(sa.select(ev.c.id).where(
      ev.c.session_id == row.id, ev.c.kind == "feedback")).first() is None:
    conn.execute(ev.insert().values(session_id=row.id, page_load_id="finish", seq=0,
                                    kind="feedback", t_client=float(now), t_server=now,
                                    payload_json=json.dumps({"feedback": feedback})))
  from cv_jax.human import exclusion  # the analysis side's module (issue 11)
  try:
    checks, passed = exclusion.evaluate(row.condition, _rows(conn, store.response, row.id),
                                        _rows(conn, store.event, row.id),
                                        rules=exclusion.rules_for(exp.doc))
  except Exception as e:  # noqa: BLE001 - the participant still gets the code; data kept
    checks, passed = {"error": f"{type(e).__name__}: {e}"}, False
    anomaly(conn, row.id, "exclusion_error", checks, now)
  if checks.get("clock_agreement", {}).get("passed") is False:
    anomaly(conn, row.id, "clock_disagreement", checks["clock_agreement"], now)
  code = _code()
  se = store.session
  conn.execute(se.update().where(se.c.id == row.id).values(
      state="complete", completed_at=now, completion_code=code,
      exclusion_json=json.dumps(checks, sort_keys=True, default=str), passed=bool(passed)))
  assign.finish(conn, row.slot_id, row.id, bool(passed), settings.max_attempts)
  return _completion(exp, settings, conn, find_session(conn, token))


def image_file(conn: sa.Connection, exp: stim.Experiment, settings: Settings, token: str,
               digest: str, task_hashes) -> str:
  """The file of an image a session may see; StudyError 404 otherwise."""
  row = find_session(conn, token)
  if row.state == "abandoned" or digest not in task_hashes(row.task_id):
    raise StudyError(404, "unknown image")
  return str(exp.hash_file[digest])
