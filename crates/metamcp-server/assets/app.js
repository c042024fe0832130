// metamcp dashboard: progressive enhancement only. Every form works without this file;
// it adds confirmations before destructive actions, copy buttons, and the theme switch.
// No inline handlers (the Content-Security-Policy forbids them): everything is attached here.
"use strict";

(function () {
  const root = document.documentElement;
  const saved = localStorage.getItem("metamcp-theme");
  if (saved === "light" || saved === "dark") root.dataset.theme = saved;

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    const question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  });

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-copy]");
    if (btn) {
      const text = btn.getAttribute("data-copy");
      try {
        await navigator.clipboard.writeText(text);
        const was = btn.textContent;
        btn.textContent = btn.getAttribute("data-copied") || "Copied";
        setTimeout(() => { btn.textContent = was; }, 1500);
      } catch (_) {
        window.prompt("Copy:", text);
      }
      return;
    }
    const theme = ev.target.closest("[data-theme-toggle]");
    if (theme) {
      const dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("metamcp-theme", root.dataset.theme);
    }
  });
})();

// Table search: an input with data-filter="<rows selector>" hides the rows whose
// data-search text does not contain what was typed (case-insensitive).
(function () {
  document.addEventListener("input", (ev) => {
    const input = ev.target.closest("[data-filter]");
    if (!input) return;
    const q = input.value.trim().toLowerCase();
    for (const row of document.querySelectorAll(input.getAttribute("data-filter"))) {
      const text = (row.getAttribute("data-search") || "").toLowerCase();
      row.hidden = q !== "" && !text.includes(q);
    }
  });
})();

// The live log (/logs): an EventSource on data-live-src; lines filtered by server and text,
// paused (lines kept but not shown until resumed), cleared; the newest 2,000 kept.
(function () {
  const out = document.querySelector("[data-live-src]");
  if (!out) return;
  const serverSel = document.getElementById("live-server");
  const filter = document.getElementById("live-filter");
  const pause = document.getElementById("live-pause");
  const state = document.getElementById("live-state");
  const lines = [];
  let paused = false;
  const levelSel = document.getElementById("live-level");
  // A line's level: servers write free text on stderr, so it is read from the words used
  // (error/fatal/panic/failed/exited → error, warn → warning); the gateway's own lines
  // ([metamcp] starts, exits, restarts) are "lifecycle".
  const rank = { error: 3, warning: 2, lifecycle: 1, info: 0 };
  const levelOf = (line) => {
    if (/\b(error|fatal|panic|failed|failure|exited|crash(ed)?|refused|timed out)\b/i.test(line)) return "error";
    if (/\bwarn(ing)?\b/i.test(line)) return "warning";
    if (line.startsWith("[metamcp]")) return "lifecycle";
    return "info";
  };
  const show = () => {
    if (paused) return;
    const s = serverSel.value;
    const q = filter.value.trim().toLowerCase();
    const min = levelSel ? levelSel.value : "";
    out.textContent = lines
      .filter((l) => (!s || l.server === s) && (!q || l.line.toLowerCase().includes(q)))
      .filter((l) => !min || (min === "lifecycle" ? l.level === "lifecycle" || l.level === "error" : rank[l.level] >= rank[min]))
      .map((l) => `${l.time}  ${l.server}  ${l.level.padEnd(9)}  ${l.line}`)
      .join("\n");
    out.scrollTop = out.scrollHeight;
  };
  const es = new EventSource(out.getAttribute("data-live-src"));
  es.addEventListener("open", () => { state.textContent = state.dataset.live || "live"; });
  es.addEventListener("error", () => { state.textContent = state.dataset.reconnecting || "reconnecting…"; });
  es.addEventListener("lines", (ev) => {
    for (const l of JSON.parse(ev.data)) { l.level = levelOf(l.line); lines.push(l); }
    if (lines.length > 2000) lines.splice(0, lines.length - 2000);
    out.dataset.count = String(lines.length);
    show();
  });
  serverSel.addEventListener("change", show);
  if (levelSel) levelSel.addEventListener("change", show);
  filter.addEventListener("input", show);
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? (pause.dataset.resume || "Resume") : (pause.dataset.pause || "Pause");
    show();
  });
  document.getElementById("live-clear").addEventListener("click", () => {
    lines.length = 0;
    out.dataset.count = "0";
    show();
  });
})();

// Import from a file: an <input type=file data-file-into=ID> reads the chosen file into the
// textarea ID (the form still posts the text; nothing is uploaded as a file).
(function () {
  document.addEventListener("change", async (ev) => {
    const input = ev.target.closest("[data-file-into]");
    if (!input || !input.files || !input.files[0]) return;
    const file = input.files[0];
    if (file.size > 1024 * 1024) { window.alert("That file is larger than 1 MiB."); return; }
    document.getElementById(input.getAttribute("data-file-into")).value = await file.text();
  });
})();

// Collisions before saving: typing a tool's new name in its override form says at once when
// another tool of the namespace already goes by that name (the gateway refuses it too).
(function () {
  document.addEventListener("input", (ev) => {
    const input = ev.target.closest("[data-collision-self]");
    if (!input) return;
    const self = input.getAttribute("data-collision-self");
    const server = input.getAttribute("data-server") || "";
    // The new name keeps the server prefix the tool is shown with now.
    const typed = input.value.trim();
    const want = typed && self.startsWith(`${server}__`) ? `${server}__${typed}` : typed;
    let clash = null;
    if (want && want !== self) {
      for (const row of document.querySelectorAll("tr[data-exposed]")) {
        if (row.getAttribute("data-exposed") === want) { clash = want; break; }
      }
    }
    const form = input.closest("form");
    const note = form.querySelector("[data-collision-note]");
    const table = document.getElementById("tool-table");
    const text = (table && table.dataset.collisionText) || "Another tool is already called {}: choose another name.";
    if (note) note.textContent = clash ? text.replace("{}", clash) : "";
    const save = form.querySelector("button[type=submit]");
    if (save) save.disabled = Boolean(clash);
    input.setAttribute("aria-invalid", String(Boolean(clash)));
  });
})();
