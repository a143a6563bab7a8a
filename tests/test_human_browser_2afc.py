"""The 2-AFC exemplar trial page in a real headless Chromium against `cv-jax human serve`:
two reference panels (9 least activating left, 9 most activating right), two queries with 3 + 3
confidence buttons; a participant answers every trial (the answers known only server-side) and
the database holds exactly those clicks, scored against experiment.json."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re

import human_util as hu
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

T = 15_000


@pytest.fixture(scope="module")
def study2(tmp_path_factory):
  from cv_jax.testing.human_experiment_2afc import make_2afc
  root = tmp_path_factory.mktemp("browser_2afc")
  exp = root / "exp"
  make_2afc(exp, n_main=4, n_catch=1)
  db = str(root / "study.db")
  hu.cli("human", "init", f"--experiment={exp}", f"--db={db}", "--prolific_code=CVJAX2AFC")
  yield from hu.served_study(root, exp, db)


@pytest.fixture(scope="module")
def browser():
  yield from hu.chromium_browser()


def _correct_side(study, session_id, index):
  from cv_jax.experiment import exemplar_2afc as x2
  s = hu.sqlite_rows(study["db"], "SELECT task_id FROM session WHERE id=?", (session_id,))[0]
  task = next(t for t in study["doc"]["tasks"] if t["id"] == s["task_id"])
  return x2.shown_2afc(study["doc"], task, task["trials"][index])["correct"], task


@pytest.mark.parametrize("condition", ["natural", "synthetic"])
def test_2afc_page_whole_task(browser, study2, condition):
  ctx = browser.new_context(viewport={"width": 1400, "height": 850})
  ctx.route(re.compile(r"^https://app\.prolific\.com/.*"),
            lambda route: route.fulfill(status=200, body="<p>stub</p>", content_type="text/html"))
  page = ctx.new_page()
  page.set_default_timeout(T)
  errors = []
  page.on("console", lambda m: m.type == "error" and errors.append(m.text))
  pid = f"afc-{condition}"
  page.goto(f"{study2['server'].url}/start?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x{pid}"
            f"&c={condition}")
  page.click(".agree")
  page.wait_for_url(re.compile(r".*/run/[A-Za-z0-9_-]+$"))
  token = page.url.rsplit("/", 1)[1]
  sid = hu.sqlite_rows(study2["db"], "SELECT id FROM session WHERE token_sha256=?",
                       (hashlib.sha256(token.encode()).hexdigest(),))[0]["id"]
  page.wait_for_selector(".instructions")
  texts = [page.inner_text(".instructions")]
  while page.locator(".next").inner_text() != "Start":
    page.click(".next")
    texts.append(page.inner_text(".instructions"))
  assert "Which image fits the Right Examples better?" in "\n".join(texts)
  page.click(".next")
  page.click(".fs")
  clicks = []
  task = None
  while True:
    t = page.wait_for_selector(".trial.shown:not(.example), .feedback")
    if "feedback" in (t.get_attribute("class") or ""):
      break
    # The 2-AFC layout: min references left, max right, two queries with 3 + 3 buttons.
    assert "afc" in t.get_attribute("class")
    assert page.locator(".trial.shown .refs.min img.ref").count() == 9
    assert page.locator(".trial.shown .refs.max img.ref").count() == 9
    assert page.locator(".trial.shown img.query").count() == 2
    assert page.locator(".trial.shown button.conf").count() == 6
    assert page.inner_text(".trial.shown .refs.min h2") == "Left Examples"
    idx = int(t.get_attribute("data-entry"))
    side, task = _correct_side(study2, sid, idx)
    if len(clicks) == 1:
      side = "left" if side == "right" else "right"          # one wrong answer
    button = {"left": 1, "right": 4}[side]                   # confidence 2
    if not clicks and condition == "natural":
      shots = pathlib.Path(os.environ.get("CV_JAX_SCREENSHOTS", study2["root"]))
      page.screenshot(path=str(shots / "human_2afc_trial.png"))
    page.click(f".trial.shown button.conf[data-button='{button}']")
    page.click(".trial.shown button.continue:not([hidden])")
    page.wait_for_function(
        "(i) => !document.querySelector(`.trial.shown[data-entry='${i}']`)", arg=str(idx))
    clicks.append((idx, button))
  page.fill(".feedback", "fine")
  page.click(".submit")
  page.wait_for_url(re.compile(r"^https://app\.prolific\.com/.*cc=CVJAX2AFC"), timeout=30_000)
  rows = hu.sqlite_rows(study2["db"], "SELECT * FROM response WHERE session_id=? AND phase='main'"
                        " ORDER BY entry_index", (sid,))
  assert [(r["entry_index"], r["button_index"]) for r in rows] == sorted(clicks)
  assert len(rows) == len(task["trials"])
  for r in rows:
    side, _ = _correct_side(study2, sid, r["entry_index"])
    assert r["max_side"] == side and bool(r["correct"]) == (r["chosen_side"] == side)
    assert r["confidence"] == 2
  assert sum(not r["correct"] for r in rows) == 1
  s = hu.sqlite_rows(study2["db"], "SELECT * FROM session WHERE id=?", (sid,))[0]
  assert s["state"] == "complete" and s["condition"] == condition
  checks = json.loads(s["exclusion_json"])
  assert checks["catch_trials"]["threshold"] == 0.8
  assert not errors, errors
  ctx.close()
