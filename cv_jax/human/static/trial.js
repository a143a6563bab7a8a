// The 2-AFC + confidence trial screen (cv_jax's own code, laid out as in the paper):
// references on the left in a ceil(sqrt(n))-column grid titled "Favorite Images"; on the right
// the un-occluded query ("Another Favorite Image", "Favorite Image" without references), the
// question "Which image is more favored?" and the two occluded queries side by side, each with
// confidence buttons (left: 3 2 1, right: 1 2 3, "More Confident" pointing outward). One click
// frames the chosen image and disables every button; Continue appears after the delay.
// Descriptors of kind "exemplar_2afc" get the 2-AFC exemplar layout (layout2afc) instead.

import { now } from "./api.js";

export const LABELS = [3, 2, 1, 1, 2, 3];

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function image(src, cls) {
  const img = el("img", { class: cls, alt: "" });
  img.src = src;
  img.draggable = false;
  return img;
}

function buttonRow(side, onClick) {
  const idx = side === "left" ? [0, 1, 2] : [3, 4, 5];
  const buttons = idx.map((i) => el("button", { class: "conf", "data-button": String(i),
                                                type: "button", text: String(LABELS[i]) }));
  buttons.forEach((b) => b.addEventListener("click", () => onClick(Number(b.dataset.button))));
  const arrow = el("div", { class: `arrow ${side}`,
                            text: side === "left" ? "\u2190 More Confident" : "More Confident \u2192" });
  return { row: el("div", { class: `buttons ${side}` }, [...buttons]), arrow, buttons };
}

function refGrid(srcs, title, cls) {
  const cols = Math.ceil(Math.sqrt(srcs.length));
  const grid = el("div", { class: "grid" }, srcs.map((r) => image(r, "ref")));
  grid.style.gridTemplateColumns = `repeat(${cols}, auto)`;
  return el("div", { class: `refs ${cls}` }, [el("h2", { text: title }), grid]);
}

// The 2-AFC exemplar trial (Borowski et al. 2021 / IMI): the least activating references on the
// left ("Left Examples"), the most activating on the right ("Right Examples"), and in the centre
// the two natural queries, each with its confidence buttons.
function layout2afc(desc, root) {
  root.classList.add("afc");
  const centre = el("div", { class: "queries" });
  centre.append(el("h2", { text: "Which image fits the Right Examples better?" }));
  const pair = el("div", { class: "pair" });
  centre.append(pair);
  const status = el("div", { class: "trial-status" });
  const cont = el("button", { class: "continue", type: "button", text: "Continue" });
  cont.hidden = true;
  centre.append(el("div", { class: "after" }, [status, cont]));
  root.append(refGrid(desc.min_references, "Left Examples", "min"), centre,
              refGrid(desc.max_references, "Right Examples", "max"));
  return { root, pair, status, cont };
}

// Build the trial DOM for a descriptor; `interactive: false` renders the layout only.
export function layout(desc, condition) {
  const refs = desc.references || [];
  const root = el("div", { class: "trial", "data-phase": desc.phase,
                           "data-attempt": String(desc.attempt),
                           "data-entry": String(desc.entry_index) });
  if (desc.kind === "exemplar_2afc") return layout2afc(desc, root);
  if (refs.length) {
    const cols = Math.ceil(Math.sqrt(refs.length));
    const grid = el("div", { class: "grid" }, refs.map((r) => image(r, "ref")));
    grid.style.gridTemplateColumns = `repeat(${cols}, auto)`;
    root.append(el("div", { class: "refs" }, [el("h2", { text: "Favorite Images" }), grid]));
  }
  const right = el("div", { class: "queries" });
  right.append(el("h2", { text: refs.length ? "Another Favorite Image" : "Favorite Image" }));
  right.append(image(desc.base, "base"));
  right.append(el("h2", { text: "Which image is more favored?" }));
  const pair = el("div", { class: "pair" });
  right.append(pair);
  const status = el("div", { class: "trial-status" });
  const cont = el("button", { class: "continue", type: "button", text: "Continue" });
  cont.hidden = true;
  right.append(el("div", { class: "after" }, [status, cont]));
  root.append(right);
  return { root, pair, status, cont };
}

// Run one trial. `send(item)` queues the answer (returns a promise of the server's result);
// resolves with {button_index, side, result} after Continue.
export function runTrial(container, desc, opts) {
  const { condition, delayMs, feedback, send, onContinue } = opts;
  const { root, pair, status, cont } = layout(desc, condition);
  const options = {};
  let answered = false;
  let tShown = null;
  let resolveTrial;
  const done = new Promise((r) => { resolveTrial = r; });

  function click(button) {
    if (answered || tShown === null) return;
    answered = true;
    const tChoice = now();
    const side = button < 3 ? "left" : "right";
    for (const s of ["left", "right"]) options[s].buttons.forEach((b) => { b.disabled = true; });
    options[side].frame.classList.add("chosen");
    options[side].buttons[button % 3].classList.add("picked");
    const item = { phase: desc.phase, attempt: desc.attempt, entry_index: desc.entry_index,
                   button_index: button, rt_ms: Math.round(tChoice - tShown),
                   t_shown: tShown, t_choice: tChoice, page_load_id: opts.pageLoadId };
    const result = send(item);
    const ready = [new Promise((r) => setTimeout(r, delayMs))];
    if (feedback) {
      status.textContent = "Checking\u2026";
      ready.push(result.then((res) => {
        status.textContent = res.correct ? "That was correct!" : "That was incorrect!";
        status.className = `trial-status ${res.correct ? "good" : "bad"}`;
        return res;
      }));
    }
    Promise.all(ready).then(() => {
      cont.hidden = false;
      cont.addEventListener("click", () => {
        cont.disabled = true;
        const tContinue = now();
        onContinue(item, tContinue);
        result.then((res) => resolveTrial({ button_index: button, side, result: res }));
        if (!feedback) resolveTrial({ button_index: button, side, result: null });
      }, { once: true });
    });
  }

  for (const side of ["left", "right"]) {
    const { row, arrow, buttons } = buttonRow(side, click);
    buttons.forEach((b) => { b.disabled = true; });
    const img = image(side === "left" ? desc.left : desc.right, "query");
    const frame = el("div", { class: "frame" }, [img]);
    const controls = el("div", { class: `controls ${side}` },
                        side === "left" ? [arrow, row] : [row, arrow]);
    pair.append(el("div", { class: `option ${side}`, "data-side": side }, [frame, controls]));
    options[side] = { buttons, frame };
  }
  container.replaceChildren(root);
  const imgs = Array.from(root.querySelectorAll("img"));
  Promise.all(imgs.map((i) => i.decode().catch(() => null))).then(() => {
    requestAnimationFrame(() => {
      tShown = now();
      for (const s of ["left", "right"]) options[s].buttons.forEach((b) => { b.disabled = false; });
      root.classList.add("shown");
    });
  });
  return done;
}
