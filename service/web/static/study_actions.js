// A study page's actions: cancel (two clicks), extend (POST /api/studies/{id}/extend) and retry
// (POST /api/studies/{id}/retry). Each sends the API token when the server needs one (never
// stored) and, on success, announces the study it got back as a "lcw:study" event: the page's
// header, charts, table and polling follow it (study.js).
"use strict";

(function () {
  const { data, request, authHeaders, errorText, vocabulary } = window.LCW;
  const sid = data("page-config").study_id;

  function announce(study) {
    document.dispatchEvent(new CustomEvent("lcw:study", { detail: study }));
  }

  function say(node, text, ok) {
    node.textContent = text;
    node.className = "form-msg " + (ok ? "ok" : "bad");
  }

  function failure(res, what) {
    return (res.status === 401 ? what + " needs a valid API token: " : "Could not " + what.toLowerCase() + ": ") +
      errorText(res.body, res.status);
  }

  // -- cancel --------------------------------------------------------------------------------------

  const cancelForm = document.getElementById("cancel-form");
  const cancelBtn = document.getElementById("cancel-btn");
  const cancelMsg = document.getElementById("cancel-msg");
  let armed = null;
  const disarm = () => { armed = null; cancelBtn.textContent = "Cancel study"; cancelBtn.classList.remove("armed"); };
  cancelForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!armed) {
      cancelBtn.textContent = "Confirm cancel";
      cancelBtn.classList.add("armed");
      armed = setTimeout(disarm, 4000);
      return;
    }
    clearTimeout(armed);
    cancelBtn.disabled = true;
    const res = await request("/api/studies/" + sid + "/cancel", {
      method: "POST", headers: authHeaders(document.getElementById("cancel-token")),
    });
    cancelBtn.disabled = false;
    disarm();
    if (res.ok) {
      say(cancelMsg, "Cancelled: pending and running trials stop.", true);
      announce(res.body);
    } else {
      say(cancelMsg, failure(res, "Cancel"), false);
    }
  });

  // -- extend --------------------------------------------------------------------------------------

  const extendForm = document.getElementById("extend-form");
  const extendMsg = document.getElementById("extend-msg");
  const token = () => document.getElementById("actions-token");

  /** "0.3, 1e-2  3" -> [0.3, 0.01, 3] (numbers) or ["a", "b"] (words); empty -> []. */
  function values(text, numeric) {
    const parts = String(text || "").split(/[\s,]+/).filter((v) => v !== "");
    return numeric ? parts.map(Number) : parts;
  }

  function extension() {
    const form = new FormData(extendForm);
    const body = {};
    const seeds = String(form.get("seeds") || "").trim();
    if (seeds) body.seeds = Number(seeds);
    const slots = String(form.get("trials_per_cell") || "").trim();
    if (slots) body.lr_search = { trials_per_cell: Number(slots) };
    for (const [name, numeric] of [["learning_rates", true], ["init_scales", true], ["depths", true], ["widths", true]]) {
      const list = values(form.get(name), numeric);
      if (list.length) body[name] = list;
    }
    for (const name of ["methods", "activations"]) {
      const list = form.getAll(name).map(String);
      if (list.length) body[name] = list;
    }
    return body;
  }

  function newKey() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random();
  }

  if (extendForm) {
    let key = newKey(); // the same key while the same extension is retried
    let lastBody = "";
    extendForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = extension();
      if (!Object.keys(body).length) {
        say(extendMsg, "Nothing to add: give a larger seed count or values to add.", false);
        return;
      }
      const text = JSON.stringify(body);
      if (text !== lastBody) { key = newKey(); lastBody = text; }
      const button = document.getElementById("extend-btn");
      button.disabled = true;
      const res = await request("/api/studies/" + sid + "/extend", {
        method: "POST", body: text,
        headers: authHeaders(token(), { "Content-Type": "application/json", "Idempotency-Key": key }),
      });
      button.disabled = false;
      if (res.ok) {
        const s = res.body;
        say(extendMsg, "Added " + s.added_trials + " trials (" + s.trial_count + " in all); only they run.", true);
        extendForm.reset();
        lastBody = "";
        announce(s);
      } else {
        say(extendMsg, failure(res, "Extend"), false);
      }
    });
  }

  // -- retry ---------------------------------------------------------------------------------------

  const retryForm = document.getElementById("retry-form");
  const retryMsg = document.getElementById("retry-msg");
  const retriable = (study) =>
    vocabulary.trial_retriable.reduce((n, status) => n + (study.progress[status] || 0), 0);

  if (retryForm) {
    retryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = document.getElementById("retry-btn");
      button.disabled = true;
      const res = await request("/api/studies/" + sid + "/retry", {
        method: "POST", headers: authHeaders(token()),
      });
      button.disabled = false;
      if (res.ok) {
        say(retryMsg, "Requeued " + res.body.requeued_trials + " trials with a fresh attempt budget.", true);
        announce(res.body);
      } else {
        say(retryMsg, failure(res, "Retry"), false);
      }
    });
    const follow = (event) => {
      const n = retriable(event.detail);
      retryForm.classList.toggle("hidden", n === 0);
      document.getElementById("retry-count").textContent = String(n);
    };
    document.addEventListener("lcw:study", follow); // after an action
    document.addEventListener("lcw:progress", follow); // every poll while the study runs
  }
})();
