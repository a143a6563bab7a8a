// Requests to the study server and the answer outbox (cv_jax, plain ES module).
//
// Every answer and event first goes into an outbox in localStorage, keyed so that a retry or a
// second click can never make a second entry: answers by "phase:attempt:entry_index", events by
// "page_load_id:seq". The outbox is flushed at once, retried with a bounded backoff (1-30 s),
// on the browser's "online" event, and with `keepalive` when the page is hidden. An item leaves
// the outbox only when the server has answered for it (stored, duplicate, conflict or refused).

export function now() {
  return performance.timeOrigin + performance.now();
}

function randomId() {
  const a = new Uint8Array(12);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class SessionGone extends Error {}

export class Api {
  constructor(token) {
    this.token = token;
    this.base = `/api/s/${token}`;
    this.pageLoadId = randomId();
    this.seq = 0;
    this.key = `cvjax.outbox.${token}`;
    this.results = {};
    this.waiters = {};
    this.flushing = null;
    this.again = false;
    this.backoff = 1000;
    this.timer = null;
    this.onchange = () => {};
    this.gone = false;
    window.addEventListener("online", () => this.flush());
    document.addEventListener("visibilitychange", () => {
      this.event(document.visibilityState === "hidden" ? "visibility_hidden" : "visibility_visible");
      if (document.visibilityState === "hidden") this.flush(true);
    });
  }

  load() {
    try {
      const ob = JSON.parse(localStorage.getItem(this.key) || "null");
      if (ob && ob.responses && ob.events) return ob;
    } catch (e) { /* a broken outbox is replaced */ }
    return { responses: {}, events: {} };
  }

  save(ob) {
    localStorage.setItem(this.key, JSON.stringify(ob));
    this.onchange(this.pending());
  }

  pending() {
    const ob = this.load();
    return Object.keys(ob.responses).length + Object.keys(ob.events).length;
  }

  pendingAnswers() {
    return new Set(Object.keys(this.load().responses));
  }

  static answerKey(phase, attempt, entryIndex) {
    return `${phase}:${attempt}:${entryIndex}`;
  }

  // Queue one answer (the first one for its key wins) and send it; resolves with the server's
  // result for it ({status, correct?}) once acknowledged.
  answer(item) {
    const k = Api.answerKey(item.phase, item.attempt, item.entry_index);
    const ob = this.load();
    if (!(k in ob.responses) && !(k in this.results)) {
      ob.responses[k] = item;
      this.save(ob);
    }
    const p = new Promise((resolve) => {
      if (k in this.results) resolve(this.results[k]);
      else (this.waiters[k] = this.waiters[k] || []).push(resolve);
    });
    this.flush();
    return p;
  }

  event(kind, payload) {
    const item = { page_load_id: this.pageLoadId, seq: this.seq++, kind, t_client: now(),
                   payload: payload || {} };
    const ob = this.load();
    ob.events[`${item.page_load_id}:${item.seq}`] = item;
    this.save(ob);
    this.flush();
  }

  // Send what the outbox holds; one flush at a time (a call during a flush runs another after).
  flush(keepalive = false) {
    if (this.gone) return Promise.resolve(false);
    if (this.flushing) { this.again = true; return this.flushing; }
    this.flushing = (async () => {
      let ok = true;
      do {
        this.again = false;
        ok = await this.sendOnce(keepalive);
      } while (ok && this.again);
      this.flushing = null;
      if (!ok && !this.gone) this.retryLater();
      else if (ok) this.backoff = 1000;
      return ok;
    })();
    return this.flushing;
  }

  retryLater() {
    if (this.timer) return;
    const wait = this.backoff;
    this.backoff = Math.min(30000, this.backoff * 2);
    this.timer = setTimeout(() => { this.timer = null; this.flush(); }, wait);
  }

  async post(path, body, keepalive) {
    const r = await fetch(`${this.base}/${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), keepalive, cache: "no-store" });
    if (r.status === 404 || r.status === 410) {
      this.gone = true;
      throw new SessionGone((await r.json().catch(() => ({}))).error || "session ended");
    }
    return r;
  }

  async sendOnce(keepalive) {
    try {
      let ob = this.load();
      const evs = Object.values(ob.events).slice(0, 256);
      if (evs.length) {
        const r = await this.post("events", { events: evs }, keepalive);
        await r.text();  // read every body (an unread one counts as an aborted request)
        if (!r.ok) return false;
        ob = this.load();
        for (const e of evs) delete ob.events[`${e.page_load_id}:${e.seq}`];
        this.save(ob);
      }
      const keys = Object.keys(ob.responses).slice(0, 64);
      if (keys.length) {
        const items = keys.map((k) => ob.responses[k]);
        const r = await this.post("responses", { responses: items }, keepalive);
        if (r.status !== 200 && r.status !== 409) { await r.text(); return false; }
        const body = await r.json();
        ob = this.load();
        for (const res of body.results) {
          delete ob.responses[res.key];
          this.results[res.key] = res;
          for (const w of this.waiters[res.key] || []) w(res);
          delete this.waiters[res.key];
        }
        this.save(ob);
      }
      ob = this.load();
      if (Object.keys(ob.responses).length || Object.keys(ob.events).length) this.again = true;
      return true;
    } catch (e) {
      if (e instanceof SessionGone) { this.onchange(this.pending()); throw e; }
      return false;
    }
  }

  // Resolves when the outbox is empty (retrying meanwhile).
  async drain(onwait) {
    for (;;) {
      const ok = await this.flush();
      const n = this.pending();
      if (ok && n === 0) return;
      if (onwait) onwait(n);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async getState() {
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(this.base, { cache: "no-store" });
        if (r.status === 404 || r.status === 410 || r.status === 409) {
          this.gone = true;
          throw new SessionGone((await r.json().catch(() => ({}))).error || "session ended");
        }
        if (r.ok) return await r.json();
      } catch (e) {
        if (e instanceof SessionGone) throw e;
      }
      await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** i)));
    }
  }

  async finish(feedback) {
    for (let i = 0; ; i++) {
      try {
        const r = await this.post("finish", { feedback }, false);
        if (r.ok) return await r.json();
        await r.text();
        if (r.status === 409) await this.drain();
      } catch (e) {
        if (e instanceof SessionGone) throw e;
      }
      await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** i)));
    }
  }
}
