// Condition-specific instruction pages with the condition's own example images (Previous/Next).
// The wording follows the paper's instructions (Zimmermann, Borowski et al. 2021), rewritten.

import { layout } from "./trial.js";

const REFS = {
  synthetic: "On the left you see the <b>Favorite Images</b> of one part of the network: " +
    "pictures the computer made to excite that part as strongly as possible.",
  natural: "On the left you see the <b>Favorite Images</b> of one part of the network: " +
    "photos that excite that part strongly.",
  mixed: "On the left you see the <b>Favorite Images</b> of one part of the network: some " +
    "are pictures the computer made to excite that part as strongly as possible, the others " +
    "are photos that excite it strongly.",
  blur: "On the left you see the <b>Favorite Images</b> of one part of the network: photos " +
    "that excite that part strongly, blurred except for the very favorite aspect, which is " +
    "shown in high resolution.",
};

// The 2-AFC exemplar task (Borowski et al. 2021 / IMI): which query fits the max references.
function pages2afc(condition, nExamples, practice, nMain) {
  const kind = condition === "synthetic"
    ? "pictures the computer made to excite (right) or to silence (left) one part of the network"
    : "photos that excite one part of the network strongly (right) or not at all (left)";
  const p = [];
  p.push({ html: `<h1>Welcome!</h1><p>Thank you for taking part. In this study you will look at
    images and judge what an artificial neural network &mdash; a computer program that
    recognises objects in images &mdash; responds to.</p><p>Please read the next pages
    carefully. Use <b>Next</b> and <b>Previous</b> to move between them.</p>` });
  p.push({ html: `<h1>Left and Right Examples</h1><p>In every trial you see two groups of
    example images: ${kind}. The <b>Right Examples</b> are the images this part likes most, the
    <b>Left Examples</b> those it likes least.</p>`, example: nExamples > 0 });
  p.push({ html: `<h1>Your task</h1><p>In the centre there are two more photos. <b>Which image
    fits the Right Examples better?</b> One of them excites the same part of the network more
    than the other; choose that one.</p>`, example: nExamples > 0 });
  p.push({ html: `<h1>How to answer</h1><p>Under each of the two centre images there are three
    buttons. Click a button under the image you choose: <b>3</b> if you are very confident,
    <b>2</b> if you are fairly confident, <b>1</b> if you are not confident.</p><p>After your
    click the chosen image gets a black frame and a <b>Continue</b> button appears.</p>`,
    example: nExamples > 0 });
  p.push({ html: practice
    ? `<h1>Practice</h1><p>First you do a few practice trials and see whether each answer was
       correct.</p><p>Then the main part starts: ${nMain} trials.</p>`
    : `<h1>Let's start</h1><p>The main part has ${nMain} trials.</p>` });
  return p;
}

function pages(condition, nExamples, practice, nMain, afc) {
  if (afc) return pages2afc(condition, nExamples, practice, nMain);
  const none = condition === "none";
  const p = [];
  p.push({ html: `<h1>Welcome!</h1><p>Thank you for taking part. In this study you will look at
    images and judge what an artificial neural network &mdash; a computer program that
    recognises objects in images &mdash; likes to see.</p><p>Please read the next pages
    carefully. Use <b>Next</b> and <b>Previous</b> to move between them.</p>` });
  p.push({ html: none
    ? `<h1>The network's favorite image</h1><p>Each part of the network responds strongly to
       some images: its <b>favorite images</b>. In every trial you see one <b>Favorite
       Image</b> of one part of the network.</p>`
    : `<h1>The network's favorite images</h1><p>${REFS[condition]}</p><p>On the right you see
       <b>Another Favorite Image</b> of the same part.</p>`, example: nExamples > 0 });
  p.push({ html: `<h1>Your task</h1><p>Below ${none ? "the" : "this other"} favorite image you
    see two copies of it, each with a different part hidden by a grey square.</p><p><b>Which
    image is more favored?</b> Choose the copy that the network still likes more, i.e. the one
    where the hidden part matters less to the network.</p>`, example: nExamples > 0 });
  p.push({ html: `<h1>How to answer</h1><p>Under each of the two images there are three
    buttons. Click a button under the image you choose: <b>3</b> if you are very confident,
    <b>2</b> if you are fairly confident, <b>1</b> if you are not confident. The arrows show the
    direction of more confidence.</p><p>After your click the chosen image gets a black frame and
    a <b>Continue</b> button appears. There is no time limit, but please answer at a steady
    pace.</p>`, example: nExamples > 0 });
  p.push({ html: practice
    ? `<h1>Practice</h1><p>First you do a few practice trials and see whether each answer was
       correct. If one of them is wrong, you repeat a new set of practice trials.</p><p>Then
       the main part starts: ${nMain} trials without feedback.</p>`
    : `<h1>Let's start</h1><p>The main part has ${nMain} trials, without feedback.</p>` });
  return p;
}

// Show the pages; resolves when the participant presses Next on the last one.
export function showInstructions(container, state) {
  const examples = state.examples || [];
  const afc = state.task === "exemplar_2afc" ||
    (state.main.entries || []).some((e) => e.kind === "exemplar_2afc");
  const list = pages(state.condition, examples.length, state.has_practice, state.main.total, afc);
  let i = 0;
  return new Promise((resolve) => {
    function render() {
      const d = document.createElement("div");
      d.className = "page instructions";
      d.dataset.page = String(i);
      const text = document.createElement("div");
      text.className = "text";
      text.innerHTML = list[i].html;
      d.append(text);
      if (list[i].example && examples.length) {
        const ex = layout(examples[0], state.condition);
        ex.root.classList.add("example");
        for (const side of ["left", "right"]) {
          const opt = document.createElement("div");
          opt.className = `option ${side}`;
          const frame = document.createElement("div");
          frame.className = "frame";
          const img = document.createElement("img");
          img.className = "query";
          img.alt = "";
          img.src = side === "left" ? examples[0].left : examples[0].right;
          frame.append(img);
          const row = document.createElement("div");
          row.className = "buttons";
          for (const lab of side === "left" ? [3, 2, 1] : [1, 2, 3]) {
            const b = document.createElement("button");
            b.className = "conf";
            b.type = "button";
            b.disabled = true;
            b.textContent = String(lab);
            row.append(b);
          }
          opt.append(frame, row);
          ex.pair.append(opt);
        }
        d.append(ex.root);
      }
      const nav = document.createElement("div");
      nav.className = "nav";
      const prev = document.createElement("button");
      prev.type = "button";
      prev.className = "prev";
      prev.textContent = "Previous";
      prev.disabled = i === 0;
      const next = document.createElement("button");
      next.type = "button";
      next.className = "next primary";
      next.textContent = i === list.length - 1 ? "Start" : "Next";
      prev.addEventListener("click", () => { i -= 1; render(); });
      next.addEventListener("click", () => {
        if (i === list.length - 1) resolve();
        else { i += 1; render(); }
      });
      nav.append(prev, next);
      d.append(nav);
      container.replaceChildren(d);
    }
    render();
  });
}
