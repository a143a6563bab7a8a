"""The participant pages in a real headless Chromium (Debian's, driven by Python playwright),
against `cv-jax human serve` on 127.0.0.1 with a SQLite database (human_experiment_spec §3.12).

The test knows the answers only server-side (experiment.json + the database); the page never
does. One browser for the module, a fresh context per participant, bounded timeouts.
"""

from __future__ import annotations

import json
import os
import pathlib
import re

import human_util as hu
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

T = 15_000  # ms, any single wait


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  root = tmp_path_factory.mktemp("human_browser")
  db_file = str(root / "study.db")
  exp = hu.make_study(root, db_file, n_tasks=3, prolific_code="CVJAXTEST")
  yield from hu.served_study(root, exp, db_file)


@pytest.fixture(scope="module")
def browser():
  yield from hu.chromium_browser()


class Player:
  """Plays one participant in a browser context, clicking answers known server-side."""

  def __init__(self, browser, study, pid, *, width=1280, height=800, condition=None,
               record=False):
    self.study, self.pid = study, pid
    self.ctx = browser.new_context(viewport={"width": width, "height": height})
    self.ctx.route(re.compile(r"^https://app\.prolific\.com/.*"),
                   lambda route: route.fulfill(status=200, body="<p>prolific stub</p>",
                                               content_type="text/html"))
    self.page = self.ctx.new_page()
    self.page.set_default_timeout(T)
    self.console, self.failed, self.traffic = [], [], []
    self.page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
    self.page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure, r.post_data, self.page.url)))
    if record:
      self.page.on("response", self._record)
    self.clicks = []
    self.condition = condition
    self.session_id = None

  def _record(self, resp):
    req = resp.request
    body = None
    if "/api/" in resp.url:
      try:
        body = resp.text()
      except Exception:  # noqa: BLE001 - a body may be gone after navigation
        body = None
    self.traffic.append({"url": resp.url, "status": resp.status, "request": req.post_data,
                         "response": body})

  def start(self):
    q = f"PROLIFIC_PID={self.pid}&STUDY_ID=s1&SESSION_ID=x{self.pid}"
    if self.condition:
      q += f"&c={self.condition}"
    self.page.goto(f"{self.study['server'].url}/start?{q}")
    self.page.click(".agree")
    self.page.wait_for_url(re.compile(r".*/run/[A-Za-z0-9_-]+$"))
    token = self.page.url.rsplit("/", 1)[1]
    import hashlib
    h = hashlib.sha256(token.encode()).hexdigest()
    self.session_id = hu.sqlite_rows(self.study["db"], "SELECT id FROM session WHERE "
                                     "token_sha256=?", (h,))[0]["id"]
    return self

  def instructions(self):
    self.page.wait_for_selector(".instructions")
    while self.page.locator(".next").inner_text() != "Start":
      self.page.click(".next")
    self.page.click(".next")
    self.page.click(".fs")

  def trial(self, *, wrong=False, confidence=3, dblclick=False):
    """Answer the trial on screen; returns (phase, attempt, entry_index, button)."""
    self.page.wait_for_function("() => !!document.querySelector('.trial.shown')", polling="raf")
    t = self.page.query_selector(".trial.shown")
    phase, attempt = t.get_attribute("data-phase"), int(t.get_attribute("data-attempt"))
    idx = int(t.get_attribute("data-entry"))
    side = hu.answer_side(self.study["doc"], self.study["db"], self.session_id, phase,
                          attempt, idx)
    if wrong:
      side = "left" if side == "right" else "right"
    button = {"left": {3: 0, 2: 1, 1: 2}, "right": {1: 3, 2: 4, 3: 5}}[side][confidence]
    sel = f".trial.shown button.conf[data-button='{button}']"
    if dblclick:
      self.page.dblclick(sel)
    else:
      self.page.click(sel)
    cont = ".trial.shown button.continue:not([hidden])"
    self.page.wait_for_function(f"() => !!document.querySelector({cont!r})", polling="raf")
    self.page.click(cont)
    self.page.wait_for_function(
        "([p, a, i]) => !document.querySelector(`.trial[data-phase='${p}'][data-attempt='${a}']"
        "[data-entry='${i}']`)", arg=[phase, str(attempt), str(idx)])
    self.clicks.append((phase, attempt, idx, button))
    return phase, attempt, idx, button

  def practice(self, fail_first=True):
    """Practice: one wrong answer in block 1 (-> repeat page), then all correct."""
    attempt = 1
    while True:
      t = self.page.wait_for_selector(".trial.shown, .page .go")
      if t.get_attribute("class") and "go" in t.get_attribute("class"):
        text = self.page.inner_text(".page h1")
        self.page.click(".page .go")
        if text.startswith("Great"):
          return attempt
        attempt += 1
        continue
      wrong = fail_first and attempt == 1 and not any(c[0] == "practice" for c in self.clicks)
      self.trial(wrong=wrong)

  def main_trials(self, n, **kw):
    return [self.trial(**kw) for _ in range(n)]

  def submit(self, feedback="fine"):
    self.page.fill(".feedback", feedback)
    self.page.click(".submit")
    self.page.wait_for_url(re.compile(r"^https://app\.prolific\.com/.*cc=CVJAXTEST"),
                           timeout=30_000)

  def close(self):
    self.ctx.close()


def _responses(study, session_id, phase=None):
  sql = "SELECT * FROM response WHERE session_id=?" + (" AND phase=?" if phase else "")
  return hu.sqlite_rows(study["db"], sql + " ORDER BY id",
                        (session_id, phase) if phase else (session_id,))


def _count(study, sql, args=()):
  return hu.sqlite_rows(study["db"], sql, args)[0]["n"]


def _check_db_against_clicks(study, pl):
  rows = _responses(study, pl.session_id)
  keys = [(r["phase"], r["attempt"], r["entry_index"]) for r in rows]
  assert len(keys) == len(set(keys)), "a duplicate answer was stored"
  by_key = {(r["phase"], r["attempt"], r["entry_index"]): r for r in rows}
  assert sorted(by_key) == sorted((p, a, i) for p, a, i, _ in pl.clicks)
  labels = (3, 2, 1, 1, 2, 3)
  for p, a, i, b in pl.clicks:
    r = by_key[(p, a, i)]
    assert r["button_index"] == b and r["confidence"] == labels[b]
    assert r["chosen_side"] == ("left" if b < 3 else "right")
    assert r["rt_ms"] > 0 and r["t_choice"] > r["t_shown"] > 0
    side = hu.answer_side(study["doc"], study["db"], pl.session_id, p, a, i)
    assert r["max_side"] == side and bool(r["correct"]) == (r["chosen_side"] == side)
  return rows


def _shot(pl, condition):
  """Screenshot of a main trial (layout review; CV_JAX_SCREENSHOTS=DIR keeps them)."""
  out = pathlib.Path(os.environ.get("CV_JAX_SCREENSHOTS") or pl.study["root"])
  out.mkdir(parents=True, exist_ok=True)
  pl.page.wait_for_function("() => !!document.querySelector('.trial.shown')", polling="raf")
  pl.page.screenshot(path=str(out / f"trial_{condition}.png"))


def _leak_scan(study, pl):
  """No answer, mode, unit, trial, path or activation in any URL or API body (§3.4)."""
  doc = study["doc"]
  secrets = {"max_side", "correct", "catch", "mode", "stimuli/", "experiment", "query_",
             "activation", "trial_id", "task_id", "normal"}
  secrets |= {u["id"] for u in doc["units"]} | {t["id"] for t in doc["trials"]}
  secrets |= {t["id"] for t in doc["tasks"]}
  assert pl.traffic, "nothing recorded"
  n = 0
  for rec in pl.traffic:
    texts = [rec["url"], rec["request"] or ""]
    practice_reply = '"phase":"practice"' in (rec["request"] or "").replace(" ", "")
    if not (practice_reply and rec["url"].endswith("/responses")):
      texts.append(rec["response"] or "")  # a practice reply says `correct` (the feedback)
    for text in texts:
      low = text.lower()
      hits = [s for s in secrets if s.lower() in low]
      assert not hits, (hits, rec["url"], text[:300])
      assert not re.search(r"\b(max|min)\b", low), (rec["url"], text[:300])
      n += 1
  assert n > 50


@pytest.mark.parametrize("condition", ["synthetic", "natural", "mixed", "blur", "none"])
def test_whole_task_per_condition(browser, study, condition):
  pl = Player(browser, study, f"full-{condition}", condition=condition,
              record=condition == "mixed").start()
  pl.instructions()
  task = next(t for t in study["doc"]["tasks"] if t["condition"] == condition)
  if condition != "none":
    assert pl.practice(fail_first=True) == 2
  n = len(task["trials"])
  if condition in ("synthetic", "mixed", "none"):
    _shot(pl, condition)
  pl.main_trials(n)
  pl.submit()
  rows = _check_db_against_clicks(study, pl)
  main = [r for r in rows if r["phase"] == "main"]
  assert len(main) == n and sorted(r["entry_index"] for r in main) == list(range(n))
  if condition != "none":
    practice = [r for r in rows if r["phase"] == "practice"]
    assert {r["attempt"] for r in practice} == {1, 2}
    assert not all(r["correct"] for r in practice if r["attempt"] == 1)
    assert all(r["correct"] for r in practice if r["attempt"] == 2)
  s = hu.sqlite_rows(study["db"], "SELECT * FROM session WHERE id=?", (pl.session_id,))[0]
  assert s["state"] == "complete" and s["condition"] == condition
  checks = json.loads(s["exclusion_json"])
  assert "catch_trials" in checks and "instruction_time" in checks
  kinds = {e["kind"] for e in hu.sqlite_rows(
      study["db"], "SELECT kind FROM event WHERE session_id=?", (pl.session_id,))}
  assert {"consent", "run_start", "instructions_end", "submit", "feedback"} <= kinds
  assert not pl.console, pl.console
  assert not [u for u in pl.failed if "prolific" not in u[0]], pl.failed
  if condition == "mixed":
    _leak_scan(study, pl)
  pl.close()


def test_reload_at_trial_7_resumes_at_trial_8(browser, study):
  pl = Player(browser, study, "reload", condition="none").start()
  pl.instructions()
  done = pl.main_trials(7)
  assert [d[2] for d in done] == list(range(7))
  pl.page.reload()
  pl.page.click(".fs")  # "Welcome back": fullscreen again
  nxt = pl.trial()
  assert nxt[2] == 7, "did not resume at the 8th trial"
  rows = _responses(study, pl.session_id, "main")
  assert sorted(r["entry_index"] for r in rows) == list(range(8))  # no duplicate
  kinds = [e["kind"] for e in hu.sqlite_rows(study["db"], "SELECT kind FROM event WHERE "
                                              "session_id=? ORDER BY id", (pl.session_id,))]
  assert kinds.count("run_start") == 1 and "resume" in kinds
  pl.close()


def test_offline_mid_task_outbox_drains_and_submit_waits(browser, study):
  pl = Player(browser, study, "offline", condition="none").start()
  pl.instructions()
  task_n = 21
  pl.main_trials(5)
  pl.ctx.set_offline(True)
  pl.main_trials(task_n - 5)  # the clicks go on while offline
  stored = _count(study, "SELECT count(*) AS n FROM response WHERE session_id=?",
                  (pl.session_id,))
  assert stored <= 6  # at most one in flight when the network went away
  assert pl.page.evaluate("window.__cvjax.api.pending()") >= task_n - 6
  pl.page.fill(".feedback", "offline")
  pl.page.click(".submit")
  pl.page.wait_for_selector("text=Waiting for the connection")
  s = hu.sqlite_rows(study["db"], "SELECT state FROM session WHERE id=?", (pl.session_id,))[0]
  assert s["state"] != "complete"
  pl.ctx.set_offline(False)
  pl.page.wait_for_url(re.compile(r"^https://app\.prolific\.com/.*cc=CVJAXTEST"),
                       timeout=40_000)
  rows = _check_db_against_clicks(study, pl)
  assert len(rows) == task_n
  s = hu.sqlite_rows(study["db"], "SELECT state FROM session WHERE id=?", (pl.session_id,))[0]
  assert s["state"] == "complete"
  pl.close()


def test_double_click_stores_one_answer(browser, study):
  pl = Player(browser, study, "dblclick", condition="natural").start()
  pl.instructions()
  pl.practice(fail_first=False)
  pl.trial(dblclick=True)
  pl.trial(dblclick=True)
  rows = _responses(study, pl.session_id, "main")
  assert len(rows) == 2 and {r["entry_index"] for r in rows} == {0, 1}
  pl.close()


def test_small_window_is_held_at_the_size_check(browser, study):
  pl = Player(browser, study, "small", condition="blur", width=800, height=500).start()
  pl.page.wait_for_selector(".window-message")
  pl.page.wait_for_timeout(300)
  assert pl.page.query_selector(".instructions") is None
  pl.page.set_viewport_size({"width": 1280, "height": 800})
  pl.page.wait_for_selector(".instructions")
  pl.page.wait_for_timeout(300)
  ev = hu.sqlite_rows(study["db"], "SELECT payload_json FROM event WHERE session_id=? AND "
                      "kind='window_check'", (pl.session_id,))
  assert ev and json.loads(ev[0]["payload_json"])["held"] is True
  pl.close()


def test_same_prolific_id_second_context_and_after_completion(browser, study):
  a = Player(browser, study, "full-synthetic")  # completed in the per-condition test
  a.page.goto(f"{study['server'].url}/start?PROLIFIC_PID=full-synthetic")
  a.page.click(".agree")
  a.page.wait_for_selector("text=already participated")
  a.close()
  b = Player(browser, study, "twice", condition="mixed").start()
  first = b.session_id
  b.close()
  c = Player(browser, study, "twice").start()
  assert c.session_id == first
  c.close()


def test_mturk_preview_claims_nothing_and_secrets_are_not_served(browser, study):
  leased = _count(study, "SELECT count(*) AS n FROM slot WHERE status!='open'")
  pl = Player(browser, study, "preview")
  base = study["server"].url
  pl.page.goto(f"{base}/start?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1")
  pl.page.wait_for_selector("#preview:not([hidden])")
  assert _count(study, "SELECT count(*) AS n FROM slot WHERE status!='open'") == leased
  for path in ("/experiment.json", "/static/../experiment.json", "/stimuli/",
               "/exp/experiment.json"):
    assert pl.page.request.get(base + path).status == 404, path
  pl.close()
