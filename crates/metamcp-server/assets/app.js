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
