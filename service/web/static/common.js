// Shared helpers of the lcw-sweep pages (vanilla JS, no build step). Everything user-supplied is
// written with textContent or comes as server-escaped HTML; nothing is evaluated.
"use strict";

window.LCW = (function () {
  /** Parse a <script type="application/json"> data island. */
  function data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** fetch() that returns {ok, status, body} with body parsed as JSON when it is JSON. */
  async function request(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    return { ok: response.ok, status: response.status, body: body };
  }

  /** Headers with the bearer token of an input (when present and filled); never stored. */
  function authHeaders(input, extra) {
    const headers = Object.assign({}, extra || {});
    const token = input && input.value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }

  /** The message of an API error body ({"detail": str | [{msg}]}). */
  function errorText(body, status) {
    if (body && typeof body === "object" && "detail" in body) {
      const d = body.detail;
      if (Array.isArray(d)) return d.map((e) => e.msg || JSON.stringify(e)).join("; ");
      return String(d);
    }
    return "HTTP " + status;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    const s = Math.round(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + pad(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  /** Poll `fn` every `ms` while the tab is visible, until it returns false. */
  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    async function tick() {
      timer = null;
      if (stopped) return;
      if (document.visibilityState === "visible") {
        try {
          if ((await fn()) === false) { stopped = true; return; }
        } catch (err) {
          // A failed poll (server restarting) is retried on the next tick.
        }
      }
      timer = setTimeout(tick, ms);
    }
    timer = setTimeout(tick, ms);
    return { stop() { stopped = true; if (timer) clearTimeout(timer); } };
  }

  // The status vocabulary, from service/vocabulary.py (base.html's data island): never
  // redefined here.
  const vocabulary = data("lcw-vocabulary");

  /** Trials of a Progress object that ran to a result (vocabulary.trial_result). */
  function withResult(p) {
    return vocabulary.trial_result.reduce((n, status) => n + (p[status] || 0), 0);
  }

  /** Whether a study status is final (vocabulary.study_finished). */
  function studyFinished(status) {
    return vocabulary.study_finished.includes(status);
  }

  /** Update a stacked progress bar (see _progress.html) from a Progress object. */
  function setProgress(bar, p) {
    if (!bar) return;
    const total = p.total || 1;
    const scored = withResult(p);
    const done = scored + p.failed + p.cancelled;
    const widths = [scored, p.failed, p.cancelled, p.running];
    bar.querySelectorAll(".seg").forEach((seg, i) => {
      seg.style.width = ((100 * widths[i]) / total).toFixed(2) + "%";
    });
    bar.setAttribute("aria-valuenow", String(done));
    bar.setAttribute("aria-valuemax", String(p.total));
    bar.dataset.done = String(done);
  }

  return {
    data, el, request, authHeaders, errorText, duration, poll, setProgress,
    vocabulary, withResult, studyFinished,
  };
})();
