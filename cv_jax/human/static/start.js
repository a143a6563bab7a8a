// The entry page: recruiting parameters -> consent -> POST /api/sessions -> the task page.
// Prolific: PROLIFIC_PID, STUDY_ID, SESSION_ID; MTurk: workerId, assignmentId, hitId,
// turkSubmitTo (preview = assignmentId ASSIGNMENT_ID_NOT_AVAILABLE claims nothing); link: pid.
// An optional c=<condition> restricts the link to one condition.

const q = new URLSearchParams(location.search);
const show = (id) => { document.getElementById(id).hidden = false; };

function source() {
  const pick = (names) => Object.fromEntries(names.filter((n) => q.has(n)).map((n) => [n, q.get(n)]));
  if (q.get("PROLIFIC_PID")) return ["prolific", pick(["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])];
  if (q.get("assignmentId") || q.get("workerId")) {
    return ["mturk", pick(["workerId", "assignmentId", "hitId", "turkSubmitTo"])];
  }
  if (q.get("pid")) return ["link", pick(["pid"])];
  return [null, {}];
}

const MESSAGES = {
  403: "Sorry, you are not eligible: you took part in an earlier study of this series.",
  409: "You have already participated in this study. Thank you!",
  410: "There is no open place in this study right now. Please try again later.",
};

const [src, ids] = source();
if (src === "mturk" && ids.assignmentId === "ASSIGNMENT_ID_NOT_AVAILABLE") show("preview");
else if (!src) show("noid");
else {
  show("consent");
  const btn = document.querySelector(".agree");
  const err = document.querySelector(".error");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    err.hidden = true;
    const body = {
      source: src, ids, condition: q.get("c") || null,
      client: { user_agent: navigator.userAgent, screen: [screen.width, screen.height],
                window: [window.innerWidth, window.innerHeight] },
      t_client: performance.timeOrigin + performance.now(),
    };
    try {
      const r = await fetch("/api/sessions", { method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const out = await r.json().catch(() => ({}));
      if (r.status === 200 || r.status === 201) { location.replace(out.run_url); return; }
      err.textContent = MESSAGES[r.status] || `The server refused (${out.error || r.status}).`;
    } catch (e) {
      err.textContent = "No connection to the study server. Please check your connection and try again.";
      btn.disabled = false;
    }
    err.hidden = false;
  });
}
