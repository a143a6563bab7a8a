// Window-size check, image preload with progress, and the fullscreen prompt.

function page(container, html) {
  const d = document.createElement("div");
  d.className = "page";
  d.innerHTML = html;
  container.replaceChildren(d);
  return d;
}

// Hold until the window is at least width x height (the paper: 940 x 600).
export function windowCheck(container, width, height) {
  const ok = () => window.innerWidth >= width && window.innerHeight >= height;
  if (ok()) return Promise.resolve({ width: window.innerWidth, height: window.innerHeight, held: false });
  return new Promise((resolve) => {
    const d = page(container, `<h1>Please enlarge your browser window</h1>
      <p class="window-message">This study needs a window of at least ${width} &times; ${height}
      pixels. Yours is <span class="size"></span>. Please make the window larger (or maximise it);
      the study continues by itself.</p>`);
    const show = () => { d.querySelector(".size").textContent = `${window.innerWidth} \u00d7 ${window.innerHeight}`; };
    show();
    const onResize = () => {
      show();
      if (ok()) {
        window.removeEventListener("resize", onResize);
        resolve({ width: window.innerWidth, height: window.innerHeight, held: true });
      }
    };
    window.addEventListener("resize", onResize);
  });
}

// Load and decode every image (at most 6 at a time), showing progress; retries a failed image.
export async function preload(container, urls) {
  const d = page(container, `<h1>Loading the images\u2026</h1>
    <div class="progress"><div class="bar"></div></div><p class="count"></p>`);
  const bar = d.querySelector(".bar");
  const count = d.querySelector(".count");
  let done = 0;
  const show = () => {
    bar.style.width = `${urls.length ? (100 * done) / urls.length : 100}%`;
    count.textContent = `${done} / ${urls.length}`;
  };
  show();
  const queue = urls.slice();
  async function worker() {
    while (queue.length) {
      const url = queue.shift();
      for (let i = 0; i < 6; i++) {
        try {
          const img = new Image();
          img.src = url;
          await img.decode();
          window.__cvjaxImages = (window.__cvjaxImages || []).concat([img]);
          break;
        } catch (e) {
          await new Promise((r) => setTimeout(r, 500 * 2 ** i));
        }
      }
      done += 1;
      show();
    }
  }
  await Promise.all(Array.from({ length: 6 }, worker));
}

// Ask for fullscreen (a click is needed); the study goes on if the browser refuses.
export function fullscreenPrompt(container, api, again) {
  return new Promise((resolve) => {
    const d = page(container, `<h1>${again ? "Welcome back" : "Fullscreen"}</h1>
      <p>${again ? "You are continuing where you left off. " : ""}The study runs in fullscreen
      mode. Press the button to switch to fullscreen.</p>
      <p><button type="button" class="primary fs">Continue in fullscreen</button></p>`);
    d.querySelector(".fs").addEventListener("click", async () => {
      try {
        await document.documentElement.requestFullscreen();
        api.event("fullscreen_enter");
      } catch (e) {
        api.event("fullscreen_failed", { reason: String(e && e.name) });
      }
      resolve();
    }, { once: true });
  });
}
