// monitor console: live draft checks and backtests, and slow fragments. No framework, no CDN.
// Every piece of HTML inserted here was rendered (and escaped) by the server's templates.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const key = (wid) => "monitor-draft:" + (wid || "new");

  // A saved watchlist's page says so: its unsaved draft is no longer needed.
  const saved = $("[data-saved]");
  if (saved) localStorage.removeItem(key(saved.dataset.saved));

  // Slow parts of a page (cross-validation, the 3-day scan) load after it.
  document.querySelectorAll("[data-fragment]").forEach((box) => {
    fetch(box.dataset.fragment, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.status))))
      .then((html) => { box.innerHTML = html; })
      .catch(() => { box.insertAdjacentText("beforeend", " (could not load: reload the page)"); });
  });

  const form = $("#draft");
  if (!form) return;
  const area = $("#yaml"), days = $("#days"), note = $("#draft-note");
  const errors = $("#errors"), results = $("#results"), quality = $("#quality");
  const progress = $("#progress"), bar = $("#bar"), ptext = $("#progress-text");
  const csrf = form.querySelector("input[name=csrf]").value;
  const idField = $("#wid");
  const wid = () => form.dataset.wid || (idField ? idField.value.trim() : "");
  let controller = null, timer = null;

  // Never lose a draft: every keystroke is kept in this browser until a save succeeds.
  function keep() {
    localStorage.setItem(key(form.dataset.wid), JSON.stringify({ text: area.value, at: Date.now() }));
  }
  const stored = JSON.parse(localStorage.getItem(key(form.dataset.wid)) || "null");
  if (form.dataset.kept) {
    keep(); // the server sent back a draft that was not saved: it is the one to keep
  } else if (stored && stored.text !== area.value) {
    const bar = document.createElement("p");
    bar.className = "flash warn";
    bar.id = "restore-bar";
    bar.textContent = "You have an unsaved draft from " + new Date(stored.at).toLocaleString() + ". ";
    const restore = document.createElement("button");
    restore.type = "button"; restore.textContent = "Restore it"; restore.id = "restore";
    const drop = document.createElement("button");
    drop.type = "button"; drop.textContent = "Discard it";
    restore.onclick = () => { area.value = stored.text; bar.remove(); schedule(0); };
    drop.onclick = () => { localStorage.removeItem(key(form.dataset.wid)); bar.remove(); };
    bar.append(restore, " ", drop);
    form.before(bar);
  }

  errors.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-line]");
    if (!item) return;
    const line = Number(item.dataset.line);
    const lines = area.value.split("\n");
    const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
  });

  function schedule(wait) {
    clearTimeout(timer);
    timer = setTimeout(preview, wait);
  }
  area.addEventListener("input", () => { keep(); note.textContent = "unsaved changes"; schedule(600); });
  days.addEventListener("change", () => schedule(0));
  if (idField) idField.addEventListener("input", () => schedule(600));

  async function preview() {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    if (!wid()) { note.textContent = "give the watchlist an id"; return; }
    note.textContent = "checking…";
    quality.innerHTML = ""; // figures of an earlier draft would mislead
    let response;
    try {
      response = await fetch("/api/draft", {
        method: "POST", credentials: "same-origin", signal: mine.signal,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ id: wid(), yaml: area.value, days: days.value }),
      });
    } catch (e) { if (!mine.signal.aborted) note.textContent = "preview failed: " + e.message; return; }
    if (!response.ok) { note.textContent = "preview refused (" + response.status + "): reload the page"; return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          handle(JSON.parse(buffer.slice(0, cut)));
          buffer = buffer.slice(cut + 1);
        }
      }
    } catch (e) { if (!mine.signal.aborted) note.textContent = "preview stopped: " + e.message; }
    if (!mine.signal.aborted) progress.hidden = true;
  }

  function handle(msg) {
    if (msg.type === "check") {
      errors.innerHTML = msg.html;
      note.textContent = msg.ok ? "valid · backtesting…" : msg.errors.length + " problem(s)";
      if (msg.ok) { progress.hidden = false; bar.value = 0; ptext.textContent = ""; }
    } else if (msg.type === "progress") {
      bar.max = Math.max(msg.total, 1); bar.value = msg.done;
      ptext.textContent = msg.done ? msg.done + " of " + msg.total + " articles"
        : "preparing the draft's model, then " + msg.total + " articles…";
    } else if (msg.type === "result") {
      results.innerHTML = msg.html;
      progress.hidden = true;
      note.textContent = "would alert on " + msg.alerts + " · gain " + msg.gained + ", lose " + msg.lost;
    } else if (msg.type === "quality") {
      quality.innerHTML = msg.html;
    }
  }

  // The form still posts without this script (preview, save and download all work).
  form.addEventListener("submit", (ev) => {
    const action = ev.submitter && ev.submitter.value;
    if (action === "preview") { ev.preventDefault(); schedule(0); }
  });
  schedule(0);
})();
