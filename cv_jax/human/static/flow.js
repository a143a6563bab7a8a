// The task page's sequence (human_experiment_spec §3.2): window check -> preload -> welcome and
// instructions -> fullscreen -> practice blocks until passed -> main trials -> feedback ->
// submitting (waits for the outbox) -> completion. A reload resumes from the server's state;
// answers still in the outbox count as given and are not shown again.

import { Api, SessionGone } from "./api.js";
import { fullscreenPrompt, preload, windowCheck } from "./checks.js";
import { showInstructions } from "./instructions.js";
import { runTrial } from "./trial.js";

const app = document.getElementById("app");
const net = document.getElementById("net");
const token = location.pathname.split("/").filter(Boolean).pop();
const api = new Api(token);
window.__cvjax = { api };

function page(html) {
  const d = document.createElement("div");
  d.className = "page";
  d.innerHTML = html;
  app.replaceChildren(d);
  return d;
}

function button(d, cls) {
  return new Promise((resolve) => d.querySelector(cls).addEventListener("click", resolve, { once: true }));
}

function progress(frac) {
  const bar = document.querySelector("#progress .bar");
  if (bar) bar.style.width = `${Math.round(100 * frac)}%`;
}

api.onchange = (n) => {
  net.textContent = n ? `${n} not yet saved${navigator.onLine ? "" : " (offline)"}` : "";
};
document.addEventListener("fullscreenchange", () => {
  if (!document.fullscreenElement) api.event("fullscreen_exit");
});
window.addEventListener("offline", () => api.event("offline"));
window.addEventListener("online", () => api.event("online"));

function trialOpts(state, feedback) {
  return {
    condition: state.condition, delayMs: state.continue_delay_ms, feedback,
    pageLoadId: api.pageLoadId, send: (item) => api.answer(item),
    onContinue: (item, t) => api.event("trial_continue", {
      phase: item.phase, attempt: item.attempt, entry_index: item.entry_index, t_continue: t }),
  };
}

async function practice(state) {
  for (;;) {
    const block = state.practice;
    api.event("practice_block_start", { attempt: block.attempt });
    const results = [];
    for (const desc of block.entries) {
      const r = await runTrial(app, desc, trialOpts(state, true));
      results.push(r.result);
    }
    api.event("practice_block_end", { attempt: block.attempt });
    await api.drain();
    state = await api.getState();
    if (state.state !== "practice") {
      const d = page(`<h1>Great!</h1><p>You finished the practice. Let's now start the main
        part: ${state.main.total} trials, without feedback.</p>
        <p><button type="button" class="primary go">Start</button></p>`);
      await button(d, ".go");
      return state;
    }
    const d = page(`<h1>Please repeat the practice</h1><p>At least one of your answers was
      incorrect. Please look carefully at the favorite images and try a new set of practice
      trials.</p><p><button type="button" class="primary go">Repeat</button></p>`);
    await button(d, ".go");
  }
}

async function main() {
  api.event("page_load", { url_path: "/run" });
  api.flush();
  let state = await api.getState();
  if (state.state === "complete") return complete(state.completion);
  const win = await windowCheck(app, state.window.width, state.window.height);
  api.event("window_check", win);
  await preload(app, state.images);
  api.event("preload_done", { n: state.images.length });
  const resumed = state.run_started;
  api.event(resumed ? "resume" : "run_start", { state: state.state });
  if (state.state === "instructions") {
    api.event("instructions_start");
    await showInstructions(app, state);
    api.event("instructions_end");
    await fullscreenPrompt(app, api, false);
    await api.drain();
    state = await api.getState();
  } else {
    await fullscreenPrompt(app, api, true);
  }
  document.getElementById("progress").hidden = false;
  if (state.state === "practice") {
    progress(0.1);
    state = await practice(state);
  }
  const total = state.main.total;
  const local = api.pendingAnswers();
  const todo = state.main.entries.filter((d) => !local.has(`main:0:${d.entry_index}`));
  let answered = total - todo.length;
  for (const desc of todo) {
    progress(0.2 + (0.75 * answered) / total);
    await runTrial(app, desc, trialOpts(state, false));
    answered += 1;
  }
  progress(0.95);
  const d = page(`<h1>Almost done</h1><p>Thank you! If you like, tell us anything about the
    study (optional):</p><textarea class="feedback" rows="5" maxlength="5000"></textarea>
    <p>Press <b>Submit</b> to submit your answers.</p>
    <p><button type="button" class="primary submit">Submit</button></p>`);
  await button(d, ".submit");
  const feedback = d.querySelector(".feedback").value;
  if (feedback) api.event("feedback", { feedback });
  api.event("submit");
  const s = page(`<h1>Submitting\u2026</h1><p class="wait">Saving your answers.</p>`);
  await api.drain((n) => {
    s.querySelector(".wait").textContent = `Waiting for the connection: ${n} item(s) not yet
      saved. Please stay on this page; it continues by itself.`;
  });
  const completion = await api.finish(feedback);
  progress(1);
  complete(completion);
}

function complete(c) {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  if (c.kind === "prolific") {
    const d = page(`<h1>Thank you!</h1><p>Your answers are saved. You are being sent back to
      Prolific&hellip; If nothing happens, <a class="redirect" href="">click here</a>.</p>`);
    d.querySelector(".redirect").href = c.redirect;
    setTimeout(() => { location.href = c.redirect; }, 1500);
    return;
  }
  if (c.kind === "mturk") {
    const d = page(`<h1>Thank you!</h1><p>Your answers are saved. Submitting the HIT&hellip;</p>
      <form method="POST"><input type="hidden" name="assignmentId"><input type="hidden"
      name="receipt"><button class="primary" type="submit">Submit HIT</button></form>`);
    const f = d.querySelector("form");
    f.action = c.submit_url;
    f.assignmentId.value = c.assignmentId;
    f.receipt.value = c.code;
    setTimeout(() => f.submit(), 1000);
    return;
  }
  const d = page(`<h1>Thank you!</h1><p>Your answers are saved. Your completion code is</p>
    <p class="code"></p><p>You can close this window now.</p>`);
  d.querySelector(".code").textContent = c.code;
}

main().catch((e) => {
  if (e instanceof SessionGone) {
    page(`<h1>This session has ended</h1><p class="gone"></p><p>If you think this is a
      mistake, contact the researchers.</p>`).querySelector(".gone").textContent = e.message;
  } else {
    console.error(e);
    page(`<h1>Something went wrong</h1><p>Please reload the page; your answers are kept.</p>`);
  }
});
