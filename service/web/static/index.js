// Studies list: the New study form (POST /api/studies with the spec as YAML or JSON) and a
// refresh of the studies table while any study runs.
"use strict";

(function () {
  const { el, request, authHeaders, errorText, poll, data } = window.LCW;
  const form = document.getElementById("study-form");
  const spec = document.getElementById("spec");
  const token = document.getElementById("token");
  const feedback = document.getElementById("spec-feedback");
  const submit = document.getElementById("submit-study");
  let idempotencyKey = null; // one key per distinct submission: a double click creates one study

  async function refreshStudies() {
    const res = await request("/fragments/studies" + window.location.search);
    if (!res.ok) return true;
    const holder = document.getElementById("studies");
    const tmp = document.createElement("div");
    tmp.innerHTML = res.body; // server-rendered, autoescaped template
    const fresh = tmp.querySelector("#studies");
    if (holder && fresh) holder.replaceWith(fresh);
    return fresh ? fresh.dataset.live === "true" : true;
  }

  let poller = null;
  function startPolling() {
    if (poller) return;
    poller = poll(async () => {
      const live = await refreshStudies();
      if (!live) poller = null;
      return live;
    }, 4000);
  }
  const studies = document.getElementById("studies");
  if (studies && studies.dataset.live === "true") startPolling();

  if (!form) return;

  /** The 1-based line of a top-level field in the spec text, or null. */
  function lineOf(text, field) {
    if (!field) return null;
    const lines = text.split("\n");
    const yaml = new RegExp("^\\s{0,2}" + field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "\\s*:");
    const json = new RegExp('"' + field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + '"\\s*:');
    for (let i = 0; i < lines.length; i++) {
      if (yaml.test(lines[i]) || json.test(lines[i])) return i + 1;
    }
    return null;
  }

  function selectLine(line) {
    const lines = spec.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1; i++) start += lines[i].length + 1;
    spec.focus();
    spec.setSelectionRange(start, start + lines[line - 1].length);
  }

  function fieldPath(loc) {
    let out = "";
    for (const part of (loc || []).slice(loc && loc[0] === "body" ? 1 : 0)) {
      if (typeof part === "number") out += "[" + part + "]";
      else out += out ? "." + part : String(part);
    }
    return out;
  }

  function showErrors(detail) {
    feedback.replaceChildren();
    spec.classList.add("invalid");
    const list = el("ul", { class: "errors" });
    const items = Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }];
    for (const error of items) {
      const path = fieldPath(error.loc);
      let msg = error.msg || "invalid";
      if (path && msg.startsWith(path + ": ")) msg = msg.slice(path.length + 2);
      const top = (error.loc || []).find((p, i) => i > 0 && typeof p === "string") || null;
      const line = lineOf(spec.value, top);
      const item = el("li", { class: "field-error", "data-field": path || "spec" },
        el("span", { class: "field", text: path || "spec" }), " ", msg);
      if (line) {
        const go = el("a", { href: "#spec", class: "goto", text: "line " + line });
        go.addEventListener("click", (ev) => { ev.preventDefault(); selectLine(line); });
        item.append(go);
      }
      list.append(item);
    }
    feedback.append(el("p", { class: "bad", text: "The spec has " + items.length +
      (items.length === 1 ? " problem:" : " problems:") }), list);
  }

  function showMessage(text, kind) {
    feedback.replaceChildren(el("p", { class: kind || "bad", text: text }));
  }

  spec.addEventListener("input", () => { idempotencyKey = null; spec.classList.remove("invalid"); });
  document.getElementById("reset-spec").addEventListener("click", () => {
    spec.value = data("example-spec");
    idempotencyKey = null;
    spec.classList.remove("invalid");
    feedback.replaceChildren();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = spec.value;
    if (!text.trim()) { showErrors([{ loc: ["body"], msg: "the spec is empty" }]); return; }
    const isJson = /^\s*[{[]/.test(text);
    idempotencyKey = idempotencyKey || (crypto.randomUUID ? crypto.randomUUID() :
      String(Date.now()) + Math.random().toString(16).slice(2));
    submit.disabled = true;
    showMessage("Submitting…", "muted");
    try {
      const res = await request("/api/studies", {
        method: "POST",
        headers: authHeaders(token, {
          "Content-Type": isJson ? "application/json" : "application/yaml",
          "Idempotency-Key": idempotencyKey,
        }),
        body: text,
      });
      if (res.ok) {
        spec.classList.remove("invalid");
        idempotencyKey = null;
        await refreshStudies();
        const link = el("a", { href: "/studies/" + res.body.id, text: res.body.name });
        feedback.replaceChildren(el("p", { class: "success" }, "Created study #" + res.body.id +
          " ", link, " with " + res.body.trial_count + " trials."));
        startPolling();
      } else if (res.status === 401) {
        showMessage((token && token.value.trim() ? "The API token was refused: " : "This server needs an API token to write: ") +
          errorText(res.body, res.status) + ".");
        if (token) token.focus();
      } else if (res.status === 422 && res.body && Array.isArray(res.body.detail)) {
        showErrors(res.body.detail);
      } else {
        showMessage("The server refused the spec (" + res.status + "): " + errorText(res.body, res.status));
      }
    } catch (err) {
      showMessage("Could not reach the server: " + err.message);
    } finally {
      submit.disabled = false;
    }
  });
})();
