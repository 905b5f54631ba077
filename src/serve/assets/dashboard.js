// rootswap dashboard: plain JavaScript, no build step.
// The trigger token lives in this tab's sessionStorage and travels only in
// the Authorization header (never a cookie, never a form field).
"use strict";
(function () {
  const KEY = "rootswap-token";
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const isPublic = body.dataset.public === "true";
  let token = sessionStorage.getItem(KEY) || "";
  let runningId = null;
  let current = null; // { li, name, at }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  function say(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.className = isError ? "error" : "";
  }

  function showToken() {
    $("token-form").hidden = !!token;
    $("token-set").hidden = !token;
  }

  async function refresh() {
    if (!token && !isPublic) return;
    let r;
    try {
      r = await fetch("/dashboard/view", { headers: headers(), cache: "no-store" });
    } catch (e) {
      say("Cannot reach rootswap serve: " + e.message, true);
      return;
    }
    if (r.status === 401) {
      forget();
      say("The token was refused: give the value of trigger.token.", true);
      return;
    }
    if (!r.ok) {
      say(await errorText(r), true);
      return;
    }
    $("view").innerHTML = await r.text();
  }

  async function errorText(r) {
    try {
      const j = await r.json();
      if (j && j.error) return j.error;
    } catch (_) { /* not JSON */ }
    return "The service answered " + r.status + " " + r.statusText;
  }

  function forget() {
    token = "";
    sessionStorage.removeItem(KEY);
    showToken();
  }

  // --- the running deploy, live --------------------------------------------
  function fmt(ms) {
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.floor((ms % 60000) / 1000) + " s";
  }

  function endStep(at, took) {
    if (!current) return;
    current.li.classList.remove("running");
    current.li.classList.add("done");
    const ms = took !== undefined ? took : at - current.at;
    current.li.querySelector(".took").textContent = " — done in " + fmt(ms);
    current = null;
  }

  function onState(s) {
    const status = $("run-status");
    if (s.running) {
      if (runningId !== s.running) {
        runningId = s.running;
        $("steps").textContent = "";
        $("run-log").textContent = "";
        current = null;
      }
      status.className = "";
      status.textContent = "Deploy " + s.running + " is running.";
    } else if (runningId) {
      const id = runningId;
      runningId = null;
      endStep(0, undefined);
      refresh().then(() => {
        const row = document.querySelector('li.deploy[data-id="' + CSS.escape(id) + '"]');
        const result = row ? row.dataset.result : "finished";
        status.className = "done-" + (result === "success" ? "success" : "failed");
        status.textContent = "Deploy " + id + " finished: " + result + ".";
      });
    }
  }

  function onStep(e) {
    if (e.kind === "step-end") return;
    if (current && current.name !== e.step) endStep(e.at_ms);
    const li = document.createElement("li");
    li.className = "running";
    li.dataset.step = e.step;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = e.step;
    const took = document.createElement("span");
    took.className = "took";
    li.append(name, took);
    $("steps").append(li);
    current = { li: li, name: e.step, at: e.at_ms };
  }

  const FINISHED = /^(\S+) \((\d+(?:\.\d+)?)(ms|s)\)$/;
  function onLog(e) {
    const log = $("run-log");
    log.textContent += (e.level === "INFO" ? "" : e.level + " ") + e.message + "\n";
    const m = FINISHED.exec(e.message);
    if (m && current && current.name === m[1]) {
      endStep(0, Math.round(parseFloat(m[2]) * (m[3] === "s" ? 1000 : 1)));
    }
  }

  // Server-Sent Events over fetch (EventSource cannot send the token header).
  async function listen() {
    for (;;) {
      if (!token && !isPublic) {
        await new Promise((res) => setTimeout(res, 1000));
        continue;
      }
      try {
        const r = await fetch("/dashboard/events", { headers: headers(), cache: "no-store" });
        if (r.status === 401) {
          forget();
          continue;
        }
        if (!r.ok || !r.body) throw new Error("status " + r.status);
        $("running").dataset.connected = "true";
        await readEvents(r.body.getReader());
      } catch (_) {
        /* reconnect below */
      }
      $("running").dataset.connected = "false";
      await new Promise((res) => setTimeout(res, 2000));
    }
  }

  async function readEvents(reader) {
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        dispatch(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  }

  function dispatch(block) {
    let name = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
    }
    if (!data) return;
    let v;
    try { v = JSON.parse(data); } catch (_) { return; }
    if (name === "state") onState(v);
    else if (name === "step") onStep(v);
    else if (name === "log") onLog(v);
  }

  // --- actions --------------------------------------------------------------
  const CONFIRM = {
    rollback: (s) => "Roll back to " + s + "? Its version goes live (the current one is snapshotted first).",
    remove: (s) => "Remove snapshot " + s + "? This cannot be undone.",
  };

  async function act(form) {
    const action = form.dataset.action;
    const snapshot = form.dataset.snapshot;
    if (!token) {
      say("Give the trigger token first (top of the page).", true);
      $("token").focus();
      return;
    }
    if (CONFIRM[action] && !window.confirm(CONFIRM[action](snapshot))) return;
    const payload = {};
    if (snapshot) payload.snapshot = snapshot;
    const input = form.querySelector("input[name]");
    if (input && input.value.trim()) payload[input.name] = input.value.trim();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const r = await fetch("/dashboard/" + action, {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(payload),
      });
      if (!r.ok) {
        if (r.status === 401) forget();
        say(await errorText(r), true);
        return;
      }
      const j = await r.json();
      if (j.id) say((action === "rollback" ? "Rollback " : "Deploy ") + j.id + " started.", false);
      else say(j.message || "Done.", false);
      if (input) input.value = "";
      await refresh();
    } catch (e) {
      say("Cannot reach rootswap serve: " + e.message, true);
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.id === "token-form") {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      if (token) sessionStorage.setItem(KEY, token);
      showToken();
      say("", false);
      refresh();
      return;
    }
    if (form.classList.contains("action")) {
      ev.preventDefault();
      act(form);
    }
  });
  $("forget-token").addEventListener("click", () => {
    forget();
    if (!isPublic) $("view").innerHTML = '<p class="hint">Give the trigger token to see this site\'s status.</p>';
  });

  showToken();
  if (token && !isPublic) refresh();
  listen();
  // Relative times ("3 min ago") and the next poll move on: refresh now and then.
  setInterval(() => {
    if (!runningId && !$("view").contains(document.activeElement)) refresh();
  }, 60000);
})();
