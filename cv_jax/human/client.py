"""A Python participant that plays a whole study session against the HTTP API.

Used by the durability test, the load benchmark and the online simulator. It does what the
browser pages do — start a session, log the events, answer practice blocks until the server
moves on, answer the main entries through an outbox, submit, finish — with the decisions made by
a callback and faults injected on request:

    from cv_jax.human.client import Participant, Faults
    p = Participant("http://127.0.0.1:8000", "sim-0001", decide=my_policy,
                    faults=Faults(reload_p=0.05, duplicate_p=0.1), seed=1)
    result = p.run()            # -> Result (completion, acknowledged answers, latencies)

`decide(entry, info) -> (button_index, rt_ms)`:
  `entry` is the page's descriptor (`phase`, `attempt`, `entry_index`, image URLs `base`,
  `left`, `right`, `references`; the URLs end in the sha256 of the PNG, so a simulator holding
  `experiment.json` can tell which image is which); `info` = {"condition", "practice_attempt"}.
  `button_index` is 0-2 under the left image (labels 3 2 1) and 3-5 under the right image
  (labels 1 2 3). The default decision is a seeded coin flip with confidence 2.

Faults (`Faults`, each a probability per opportunity, drawn from the participant's seeded RNG):
  `reload_p` (before a main entry: drop everything in memory but the outbox, fetch the state
  again, as a browser reload), `duplicate_p` (send an answer batch twice), `cancel_p` (send a
  batch and abandon the request right after sending: its reply is never read, so the answers
  stay in the outbox and are sent again), `reorder` (send outbox batches in random order),
  `batch` (answers per batch at most).

Client times are fabricated on a virtual clock (`clock_start` epoch ms, then instruction time,
reaction times, pauses), so a ten-minute session takes seconds; the server adds its own
`t_server`. `Result.acked` maps every answer key the server acknowledged (stored or duplicate)
to the payload this client sent for it — what the durability test checks against the database.

Requests that fail (connection errors, 5xx, timeouts) are retried with exponential backoff
(for up to `retry_s` seconds per request; the outbox keeps answers across failed requests).
Uses httpx.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from typing import Any, Callable

import httpx

Decision = Callable[[dict, dict], tuple[int, float]]


@dataclasses.dataclass(frozen=True)
class Faults:
  """Fault injection of one participant (see the module docstring)."""
  reload_p: float = 0.0
  duplicate_p: float = 0.0
  cancel_p: float = 0.0
  reorder: bool = False
  batch: int = 1


@dataclasses.dataclass
class Result:
  """What one participant saw.

  Attributes:
    external_id: the participant id used.
    status: "complete", or why it stopped ("no_slot", "refused:<code>", "gave_up").
    completion: the server's completion body ({"kind", "code", ...}) or None.
    acked: answer key "phase:attempt:entry_index" -> the payload sent, for every answer the
      server acknowledged as stored or duplicate.
    conflicts: keys the server refused as conflicting.
    lost: keys the server had acknowledged but later reported missing at finish (a durability
      failure; they are sent again so the session can finish).
    latencies: (request kind, seconds, HTTP status or 0 for a failure) of every request.
    reloads, duplicates, cancels: faults injected.
  """
  external_id: str
  status: str = "started"
  completion: dict | None = None
  acked: dict = dataclasses.field(default_factory=dict)
  conflicts: list = dataclasses.field(default_factory=list)
  lost: list = dataclasses.field(default_factory=list)
  latencies: list = dataclasses.field(default_factory=list)
  reloads: int = 0
  duplicates: int = 0
  cancels: int = 0


class Gone(Exception):
  """The server ended the session (404/410) or refused to start it."""


def coin_flip(rng: random.Random) -> Decision:
  """The default decision: a seeded coin flip between the two images, confidence 2."""
  def decide(entry: dict, info: dict) -> tuple[int, float]:
    return (1 if rng.random() < 0.5 else 4), rng.uniform(600.0, 2500.0)
  return decide


class Participant:
  """One simulated participant playing a session over HTTP (see the module docstring)."""

  def __init__(self, base_url: str, external_id: str, *, source: str = "sim",
               condition: str | None = None, decide: Decision | None = None,
               faults: Faults = Faults(), seed: int = 0, clock_start: float | None = None,
               instruction_s: float = 30.0, retry_s: float = 60.0, timeout: float = 10.0,
               http: httpx.Client | None = None, deadline: float | None = None):
    self.base = base_url.rstrip("/")
    self.external_id, self.source, self.condition = external_id, source, condition
    self.rng = random.Random(seed)
    self.decide = decide or coin_flip(self.rng)
    self.faults, self.retry_s, self.timeout = faults, retry_s, timeout
    self.http = http or httpx.Client(timeout=timeout)
    self._own_http = http is None
    self.t = float(clock_start if clock_start is not None else time.time() * 1000)
    self.instruction_s = instruction_s
    self.deadline = deadline
    self.result = Result(external_id)
    self.token: str | None = None
    self.outbox: dict[str, dict] = {}
    self.events: list[dict] = []
    self.page_load = 0
    self.seq = 0

  # ---------------------------------------------------------------- requests

  def _request(self, kind: str, method: str, path: str, body: Any = None, *,
               ok: tuple[int, ...] = (200, 201)) -> httpx.Response:
    """One request, retried on failures (connection errors, timeouts, 5xx) with backoff for up
    to `retry_s` seconds; returns the response with an `ok` status or a 4xx (raises Gone for
    404/410 on a session path, or when the retries run out)."""
    give_up = time.time() + self.retry_s
    for i in itertools.count():
      if i > 0 and time.time() > give_up:
        break
      if self.deadline is not None and time.time() > self.deadline:
        raise Gone("deadline")
      t0 = time.perf_counter()
      try:
        r = self.http.request(method, self.base + path, json=body)
      except httpx.HTTPError:
        self.result.latencies.append((kind, time.perf_counter() - t0, 0))
        time.sleep(min(2.0, 0.1 * 2 ** i))
        continue
      self.result.latencies.append((kind, time.perf_counter() - t0, r.status_code))
      if r.status_code in ok or 400 <= r.status_code < 500:
        if r.status_code in (404, 410) and path.startswith("/api/s/"):
          raise Gone(f"{r.status_code}: {r.text[:200]}")
        return r
      time.sleep(min(2.0, 0.1 * 2 ** i))
    raise Gone("gave_up")

  def _cancelled_post(self, path: str, body: Any) -> None:
    """Send a request and abandon it right after sending (its reply is never read)."""
    t0 = time.perf_counter()
    try:
      self.http.post(self.base + path, json=body,
                     timeout=httpx.Timeout(self.timeout, read=0.001))
    except httpx.HTTPError:
      pass
    self.result.latencies.append(("cancelled", time.perf_counter() - t0, 0))

  def _event(self, kind: str, payload: dict | None = None, send: bool = False) -> None:
    """Queue an event (sent in batches, as the page does); `send` flushes the queue now."""
    self.events.append({"page_load_id": f"py{self.page_load}", "seq": self.seq, "kind": kind,
                        "t_client": self.t, "payload": payload or {}})
    self.seq += 1
    if send:
      self._send_events()

  def _send_events(self) -> None:
    if self.events:
      self._request("events", "POST", f"/api/s/{self.token}/events", {"events": self.events})
      self.events = []

  def _state(self) -> dict:
    self._send_events()
    return self._request("state", "GET", f"/api/s/{self.token}").json()

  # ---------------------------------------------------------------- answers

  def _answer(self, entry: dict, info: dict) -> dict:
    button, rt = self.decide(entry, info)
    self.t += self.rng.uniform(150.0, 400.0)  # image decode + frame
    shown = self.t
    self.t += float(rt)
    item = {"phase": entry["phase"], "attempt": entry["attempt"],
            "entry_index": entry["entry_index"], "button_index": int(button),
            "rt_ms": float(round(rt)), "t_shown": shown, "t_choice": self.t,
            "page_load_id": f"py{self.page_load}"}
    self.t += self.rng.uniform(400.0, 900.0)  # Continue
    return item

  @staticmethod
  def key(item: dict) -> str:
    """The idempotency key of an answer."""
    return f"{item['phase']}:{item['attempt']}:{item['entry_index']}"

  def _flush(self) -> dict[str, dict]:
    """Send the outbox (in batches, with the configured faults); returns the server's
    results per key for the answers acknowledged in this call."""
    out: dict[str, dict] = {}
    keys = list(self.outbox)
    if self.faults.reorder:
      self.rng.shuffle(keys)
    for i in range(0, len(keys), max(1, self.faults.batch)):
      batch = [self.outbox[k] for k in keys[i:i + max(1, self.faults.batch)]]
      body = {"responses": batch}
      path = f"/api/s/{self.token}/responses"
      if self.rng.random() < self.faults.cancel_p:
        self.result.cancels += 1
        self._cancelled_post(path, body)
        continue  # not acknowledged: stays in the outbox
      r = self._request("responses", "POST", path, body, ok=(200, 409))
      if r.status_code not in (200, 409):
        continue
      if self.rng.random() < self.faults.duplicate_p:
        self.result.duplicates += 1
        self._request("responses", "POST", path, body, ok=(200, 409))
      sent = {self.key(b): b for b in batch}
      for res in r.json()["results"]:
        k = res["key"]
        if res["status"] in ("stored", "duplicate"):
          self.result.acked[k] = sent[k]
        elif res["status"] == "conflict":
          self.result.conflicts.append(k)
        self.outbox.pop(k, None)
        out[k] = res
    return out

  def _drain(self) -> None:
    for _ in range(50):
      if not self.outbox:
        return
      self._flush()
    if self.outbox:
      raise Gone("gave_up")

  # ---------------------------------------------------------------- session

  def start(self) -> int:
    """POST /api/sessions; returns the HTTP status (201 new, 200 resumed)."""
    ids = {"prolific": {"PROLIFIC_PID": self.external_id, "STUDY_ID": "sim",
                        "SESSION_ID": self.external_id},
           "mturk": {"workerId": self.external_id, "assignmentId": "A" + self.external_id,
                     "hitId": "H"}}.get(self.source, {"pid": self.external_id})
    body = {"source": self.source, "ids": ids, "condition": self.condition,
            "client": {"user_agent": "cv_jax.human.client", "window": [1280, 800]},
            "t_client": self.t}
    r = self._request("sessions", "POST", "/api/sessions", body)
    if r.status_code not in (200, 201):
      raise Gone(f"refused:{r.status_code}")
    self.token = r.json()["token"]
    return r.status_code

  def reload(self) -> dict:
    """A browser reload: a new page load, the state fetched again; the outbox is kept (queued
    events are lost, as a page's unsent events would be)."""
    self.events = []
    self.result.reloads += 1
    self.page_load += 1
    self.seq = 0
    self._event("page_load")
    self._flush()
    st = self._state()
    self._event("resume", {"state": st["state"]})
    return st

  def run(self) -> Result:
    """Play the whole session; returns the Result (never raises for server refusals)."""
    try:
      self._run()
      self.result.status = "complete"
    except Gone as e:
      msg = str(e)
      self.result.status = ("no_slot" if msg == "refused:410" else msg)
    finally:
      if self._own_http:
        self.http.close()
    return self.result

  def _run(self) -> None:
    self.start()
    self._event("page_load")
    st = self._state()
    if st["state"] == "complete":
      self.result.completion = st["completion"]
      return
    info = {"condition": st["condition"], "practice_attempt": 0}
    if not st["run_started"]:
      self._event("run_start")
    if st["state"] == "instructions":
      self._event("instructions_start")
      self.t += self.instruction_s * 1000
      self._event("instructions_end")
      st = self._state()
    while st["state"] == "practice":
      block = st["practice"]
      info["practice_attempt"] = block["attempt"]
      self._event("practice_block_start", {"attempt": block["attempt"]})
      for entry in block["entries"]:
        item = self._answer(entry, info)
        self.outbox[self.key(item)] = item
        self._drain()
      self._event("practice_block_end", {"attempt": block["attempt"]})
      st = self._state()
    entries = [e for e in st["main"]["entries"]
               if f"main:0:{e['entry_index']}" not in self.outbox]
    while entries:
      if self.rng.random() < self.faults.reload_p:
        st = self.reload()
        entries = [e for e in st["main"]["entries"]
                   if f"main:0:{e['entry_index']}" not in self.outbox
                   and f"main:0:{e['entry_index']}" not in self.result.acked]
        if not entries:
          break
      entry = entries.pop(0)
      item = self._answer(entry, info)
      self.outbox[self.key(item)] = item
      if len(self.outbox) >= max(1, self.faults.batch):
        self._flush()
    self._drain()
    self.t += 5000
    self._event("submit", send=True)
    for _ in range(20):
      r = self._request("finish", "POST", f"/api/s/{self.token}/finish", {"feedback": ""},
                        ok=(200,))
      if r.status_code == 200:
        self.result.completion = r.json()
        return
      if r.status_code == 409:
        st = self._state()
        for entry in st["main"]["entries"]:  # answers lost before the server stored them: answer again
          k = f"main:0:{entry['entry_index']}"
          if k in self.result.acked:
            self.result.lost.append(k)
          if k not in self.outbox:
            self.outbox[k] = self.result.acked.get(k) or self._answer(entry, info)
        self._drain()
        continue
      raise Gone(f"refused:{r.status_code}")
    raise Gone("gave_up")
