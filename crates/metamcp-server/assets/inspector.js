// metamcp inspector: an MCP client (Streamable HTTP, protocol 2025-06-18) in the page, talking
// to the gateway's own endpoint with a short-lived inspector token (never the cookie).
// Everything a server sends is shown with textContent / data: URLs, never as HTML.
"use strict";

(function () {
  const connectForm = document.getElementById("insp-connect");
  if (!connectForm) return;
  const $ = (id) => document.getElementById(id);
  const PROTOCOL = "2025-06-18";
  // The page's language: the server puts the translated strings this script shows in
  // data-i18n (English where a string has none).
  let T = {};
  try { T = JSON.parse(connectForm.getAttribute("data-i18n") || "{}"); } catch (_) { T = {}; }
  const tr = (s) => T[s] || s;

  // ---- small DOM helpers ----
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    // Scrollable text must be reachable with the keyboard.
    if (tag === "pre") e.tabIndex = 0;
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids) if (kid) e.append(kid);
    return e;
  };
  const clear = (e) => { while (e.firstChild) e.removeChild(e.firstChild); return e; };
  let uid = 0;
  const nextId = (p) => `${p}-${++uid}`;
  const pretty = (v) => JSON.stringify(v, null, 2);

  // ---- the connection ----
  const state = $("insp-state");
  const conn = {
    endpoint: null, url: null, token: null, expiresAt: 0, session: null,
    nextId: 1, refresh: null, listen: null, connected: false,
  };

  async function mintToken() {
    const body = new URLSearchParams({
      csrf_token: connectForm.getAttribute("data-csrf"),
      endpoint: conn.endpoint,
    });
    const r = await fetch("/inspector/token", {
      method: "POST", body, credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    let j = {};
    try { j = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) throw new Error(j.error || `the gateway refused a token (HTTP ${r.status})`);
    conn.token = j.token; conn.url = j.url; conn.expiresAt = j.expires_at_ms;
    clearTimeout(conn.refresh);
    // A fresh token a minute before this one runs out (the session stays the same).
    const wait = Math.max(5000, conn.expiresAt - Date.now() - 60000);
    conn.refresh = setTimeout(() => { mintToken().catch((e) => note("token", e.message)); }, wait);
  }

  function headers(extra) {
    const h = {
      "Authorization": `Bearer ${conn.token}`,
      "Accept": "application/json, text/event-stream",
      ...extra,
    };
    if (conn.session) { h["Mcp-Session-Id"] = conn.session; h["MCP-Protocol-Version"] = PROTOCOL; }
    return h;
  }

  // Reads an SSE body, calling onMessage(obj) for each JSON message.
  async function readSse(resp, onMessage, signal) {
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        try { onMessage(JSON.parse(data)); } catch (_) { note("stream", `unreadable event: ${data.slice(0, 200)}`); }
      }
      if (signal && signal.aborted) break;
    }
  }

  // A request; notifications that arrive on its stream go to onNote (and the log).
  async function rpc(method, params, onNote) {
    const id = conn.nextId++;
    const msg = { jsonrpc: "2.0", id, method };
    if (params !== undefined) msg.params = params;
    const send = () => fetch(conn.url, {
      method: "POST", body: JSON.stringify(msg), credentials: "omit",
      headers: headers({ "Content-Type": "application/json" }),
    });
    let r = await send();
    if (r.status === 401 && conn.endpoint) { await mintToken(); r = await send(); }
    const type = r.headers.get("content-type") || "";
    if (!r.ok) {
      let why = `HTTP ${r.status}`;
      try {
        const j = await r.json();
        why = (j.error && (j.error.message || j.error)) || j.message || why;
      } catch (_) { /* not JSON */ }
      throw new Error(typeof why === "string" ? why : pretty(why));
    }
    if (method === "initialize") conn.session = r.headers.get("mcp-session-id");
    let answer = null;
    const take = (m) => {
      if (m.id === id && (m.result !== undefined || m.error !== undefined)) { answer = m; return; }
      if (m.method && m.id === undefined) { incoming(m); if (onNote) onNote(m); return; }
      if (m.method && m.id !== undefined) { refuseRequest(m); return; }
    };
    if (type.includes("text/event-stream")) await readSse(r, take);
    else take(await r.json());
    if (!answer) throw new Error("the endpoint ended the answer without a result");
    if (answer.error) {
      const e = new Error(answer.error.message || "error");
      e.rpc = answer.error;
      throw e;
    }
    return answer.result;
  }

  async function notify(method, params) {
    const msg = { jsonrpc: "2.0", method };
    if (params !== undefined) msg.params = params;
    await fetch(conn.url, {
      method: "POST", body: JSON.stringify(msg), credentials: "omit",
      headers: headers({ "Content-Type": "application/json" }),
    });
  }

  // The inspector offers no sampling, elicitation or roots: a server asking gets an error.
  function refuseRequest(m) {
    note("request", `${m.method} (declined: the inspector does not answer server requests)`);
    fetch(conn.url, {
      method: "POST", credentials: "omit",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "The metamcp inspector does not answer server requests" } }),
    }).catch(() => {});
  }

  // The standalone GET stream: list changes and logs the endpoint sends between calls.
  async function listen() {
    const ctl = new AbortController();
    conn.listen = ctl;
    while (conn.connected && !ctl.signal.aborted) {
      try {
        const r = await fetch(conn.url, {
          method: "GET", credentials: "omit", signal: ctl.signal,
          headers: headers({ "Accept": "text/event-stream" }),
        });
        if (r.status === 405) return; // the endpoint offers no such stream
        if (r.status === 401) { await mintToken(); continue; }
        if (!r.ok) { note("stream", `HTTP ${r.status}`); return; }
        await readSse(r, (m) => { if (m.method && m.id === undefined) incoming(m); else if (m.method) refuseRequest(m); }, ctl.signal);
      } catch (e) {
        if (ctl.signal.aborted) return;
        note("stream", e.message);
        await new Promise((res) => setTimeout(res, 2000));
      }
    }
  }

  // ---- notifications ----
  const notesOut = $("insp-notes");
  let notesCount = 0;
  function note(kind, text) {
    notesCount++;
    $("insp-notes-count").textContent = String(notesCount);
    notesOut.textContent += `${new Date().toLocaleTimeString()}  ${kind}  ${text}\n`;
  }
  function incoming(m) {
    const p = m.params || {};
    if (m.method === "notifications/message") note(`log ${p.level || ""}`, typeof p.data === "string" ? p.data : JSON.stringify(p.data));
    else if (m.method === "notifications/progress") note("progress", `${p.progress}${p.total !== undefined ? "/" + p.total : ""}${p.message ? " " + p.message : ""}`);
    else note(m.method, JSON.stringify(p));
    if (m.method === "notifications/tools/list_changed" && conn.connected) loadTools();
    if (m.method === "notifications/resources/list_changed" && conn.connected) loadResources();
    if (m.method === "notifications/prompts/list_changed" && conn.connected) loadPrompts();
  }
  $("insp-notes-clear").addEventListener("click", () => {
    notesOut.textContent = ""; notesCount = 0; $("insp-notes-count").textContent = "0";
  });

  // ---- connect / disconnect ----
  connectForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await disconnect(true);
    conn.endpoint = $("insp-endpoint").value;
    state.textContent = tr("connecting…");
    $("insp-connect-btn").disabled = true;
    try {
      await mintToken();
      const init = await rpc("initialize", {
        protocolVersion: PROTOCOL,
        capabilities: {},
        clientInfo: { name: "metamcp-inspector", version: "1" },
      });
      await notify("notifications/initialized");
      conn.connected = true;
      const info = init.serverInfo || {};
      $("insp-server").textContent = `${conn.endpoint}: ${info.name || "server"} ${info.version || ""}, ${tr("protocol")} ${init.protocolVersion}` +
        (init.instructions ? `. ${tr("Instructions")}: ${init.instructions}` : "");
      state.textContent = tr("connected");
      $("insp").hidden = false;
      $("insp-disconnect").disabled = false;
      listen();
      await Promise.all([loadTools(), loadResources(), loadPrompts()]);
    } catch (e) {
      state.textContent = `${tr("could not connect")}: ${e.message}`;
      conn.connected = false;
    } finally {
      $("insp-connect-btn").disabled = false;
    }
  });

  async function disconnect(quiet) {
    const was = conn.session;
    conn.connected = false;
    clearTimeout(conn.refresh);
    if (conn.listen) conn.listen.abort();
    if (was && conn.url) {
      try { await fetch(conn.url, { method: "DELETE", credentials: "omit", headers: headers() }); } catch (_) { /* gone */ }
    }
    conn.session = null; conn.token = null;
    $("insp-disconnect").disabled = true;
    if (!quiet) { state.textContent = tr("disconnected"); $("insp").hidden = true; }
  }
  $("insp-disconnect").addEventListener("click", () => disconnect(false));
  window.addEventListener("pagehide", () => { disconnect(true); });

  // ---- tabs (arrow keys move between them) ----
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function select(tab) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
  }
  for (const t of tabs) {
    t.addEventListener("click", () => select(t));
    t.addEventListener("keydown", (ev) => {
      const i = tabs.indexOf(t);
      if (ev.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
      if (ev.key === "ArrowLeft") select(tabs[(i + tabs.length - 1) % tabs.length]);
    });
  }

  // ---- lists (all pages of a paginated list) ----
  async function all(method, key) {
    const items = [];
    let cursor;
    for (let i = 0; i < 100; i++) {
      const r = await rpc(method, cursor ? { cursor } : {});
      items.push(...(r[key] || []));
      if (!r.nextCursor) break;
      cursor = r.nextCursor;
    }
    return items;
  }

  function picks(ul, items, label, onPick) {
    clear(ul);
    for (const it of items) {
      const b = el("button", { type: "button", text: label(it), title: it.description || "" });
      b.addEventListener("click", () => {
        for (const o of ul.querySelectorAll("button")) o.removeAttribute("aria-current");
        b.setAttribute("aria-current", "true");
        onPick(it);
      });
      ul.append(el("li", {}, b));
    }
    if (!items.length) ul.append(el("li", { class: "muted", text: tr("none") }));
  }

  // ---- tools ----
  let tools = [];
  async function loadTools() {
    try {
      tools = await all("tools/list", "tools");
      $("insp-tools-count").textContent = `${tr("tools")}: ${tools.length}`;
      showTools();
    } catch (e) { $("insp-tools-count").textContent = `tools/list failed: ${e.message}`; }
  }
  function showTools() {
    const q = $("insp-tool-filter").value.trim().toLowerCase();
    const shown = tools.filter((t) => !q || t.name.toLowerCase().includes(q) || (t.description || "").toLowerCase().includes(q));
    picks($("insp-tools"), shown, (t) => t.title ? `${t.name} — ${t.title}` : t.name, showTool);
  }
  $("insp-tool-filter").addEventListener("input", showTools);
  $("insp-tools-refresh").addEventListener("click", loadTools);

  function showTool(tool) {
    const pane = clear($("insp-tool"));
    pane.append(el("h2", { text: tool.name }));
    if (tool.description) pane.append(el("p", { text: tool.description }));
    if (tool.annotations) pane.append(el("p", { class: "hint", text: `${tr("Annotations")}: ${JSON.stringify(tool.annotations)}` }));
    const form = el("form", { "data-tool": tool.name });
    const field = schemaField(tool.inputSchema || { type: "object" }, "arguments", true, tr("Arguments"));
    form.append(field.node);
    const rawId = nextId("raw");
    const rawToggle = el("input", { type: "checkbox", id: rawId });
    const raw = el("textarea", { "aria-label": tr("Edit the arguments as JSON"), hidden: true });
    rawToggle.addEventListener("change", () => {
      raw.hidden = !rawToggle.checked;
      if (rawToggle.checked) { try { raw.value = pretty(field.get() || {}); } catch (e) { raw.value = "{}"; } }
    });
    form.append(el("label", { for: rawId }, rawToggle, document.createTextNode(` ${tr("Edit the arguments as JSON")}`)), raw);
    const run = el("button", { type: "submit", class: "primary", text: tr("Run tool") });
    form.append(el("p", {}, run));
    const out = el("div", { "aria-live": "polite" });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let args;
      try { args = rawToggle.checked ? JSON.parse(raw.value || "{}") : (field.get() || {}); }
      catch (e) { out.prepend(el("p", { class: "error", role: "alert", text: `${tr("Arguments")}: ${e.message}` })); return; }
      const token = `insp-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      const box = el("div", { class: "result", "data-call": tool.name });
      const bar = el("progress", { "aria-label": `${tr("progress")}: ${tool.name}` });
      const status = el("p", { class: "muted", role: "status", text: tr("running…") });
      box.append(status, bar);
      out.prepend(box);
      run.disabled = true;
      const t0 = performance.now();
      try {
        const result = await rpc("tools/call", { name: tool.name, arguments: args, _meta: { progressToken: token } }, (m) => {
          if (m.method === "notifications/progress" && m.params && m.params.progressToken === token) {
            const p = m.params;
            if (p.total) { bar.max = p.total; bar.value = p.progress; } else { bar.removeAttribute("value"); }
            status.textContent = `${tr("progress")} ${p.progress}${p.total !== undefined ? " / " + p.total : ""}${p.message ? ": " + p.message : ""}`;
            box.dataset.progress = String(p.progress);
          }
        });
        bar.remove();
        status.textContent = `${result.isError ? tr("tool error") : tr("done")}, ${Math.round(performance.now() - t0)} ms`;
        if (result.isError) box.classList.add("is-error");
        box.append(renderResult(result));
      } catch (e) {
        bar.remove();
        box.classList.add("is-error");
        status.textContent = `${tr("failed")}: ${e.message}`;
        if (e.rpc) box.append(el("pre", { text: pretty(e.rpc) }));
      } finally { run.disabled = false; }
    });
    pane.append(form, out);
  }

  // A form field for a JSON schema: { node, get() } (get() → value, or undefined when empty).
  function schemaField(schema, name, required, label) {
    schema = schema || {};
    const id = nextId("f");
    const title = schema.title || label || name;
    const hint = schema.description ? el("span", { class: "hint", text: ` ${schema.description}` }) : null;
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
    const enumOf = schema.enum || (schema.oneOf && schema.oneOf.every((o) => "const" in o) ? schema.oneOf.map((o) => o.const) : null);
    const mark = required ? " *" : "";
    if (enumOf) {
      const sel = el("select", { id, name });
      if (!required) sel.append(el("option", { value: "", text: tr("(not set)") }));
      enumOf.forEach((v, i) => sel.append(el("option", { value: String(i), text: String(v), selected: schema.default === v })));
      return {
        node: el("div", { class: "field" }, el("label", { for: id, text: title + mark }, hint), sel),
        get: () => (sel.value === "" ? undefined : enumOf[Number(sel.value)]),
      };
    }
    if (type === "object" && schema.properties) {
      const fs = el("fieldset", {}, el("legend", { text: title + mark }));
      if (hint && name !== "arguments") fs.append(el("p", { class: "hint", text: schema.description }));
      const req = new Set(schema.required || []);
      const kids = Object.entries(schema.properties).map(([k, s]) => [k, schemaField(s, k, req.has(k), k)]);
      for (const [, f] of kids) fs.append(f.node);
      return {
        node: fs,
        get: () => {
          const o = {};
          for (const [k, f] of kids) { const v = f.get(); if (v !== undefined) o[k] = v; }
          return Object.keys(o).length || required ? o : undefined;
        },
      };
    }
    if (type === "array" && schema.items && !Array.isArray(schema.items)) {
      const fs = el("fieldset", {}, el("legend", { text: title + mark }));
      if (schema.description) fs.append(el("p", { class: "hint", text: schema.description }));
      const list = el("div");
      const items = [];
      const add = (value) => {
        const f = schemaField(schema.items, `${name}[${items.length}]`, true, `item ${items.length + 1}`);
        const row = el("div", { class: "field" }, f.node);
        const rm = el("button", { type: "button", text: tr("Remove item") });
        const entry = { f, row };
        rm.addEventListener("click", () => { items.splice(items.indexOf(entry), 1); row.remove(); });
        row.append(rm);
        items.push(entry);
        list.append(row);
        if (value !== undefined && f.set) f.set(value);
      };
      const addBtn = el("button", { type: "button", text: `${tr("Add item")}: ${name}` });
      addBtn.addEventListener("click", () => add());
      fs.append(list, addBtn);
      if (Array.isArray(schema.default)) schema.default.forEach((v) => add(v));
      return {
        node: fs,
        get: () => { const a = items.map((e) => e.f.get()).filter((v) => v !== undefined); return a.length || required ? a : undefined; },
      };
    }
    if (type === "boolean") {
      const cb = el("input", { type: "checkbox", id, name, checked: schema.default === true });
      let touched = schema.default !== undefined;
      cb.addEventListener("change", () => { touched = true; });
      return {
        node: el("div", { class: "field" }, el("label", { for: id }, cb, document.createTextNode(` ${title}${mark}`), hint)),
        get: () => (touched || required ? cb.checked : undefined),
      };
    }
    if (type === "number" || type === "integer") {
      const inp = el("input", { type: "number", id, name, step: type === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum, value: schema.default, required });
      return {
        node: el("div", { class: "field" }, el("label", { for: id, text: title + mark }, hint), inp),
        get: () => (inp.value === "" ? undefined : Number(inp.value)),
        set: (v) => { inp.value = String(v); },
      };
    }
    if (type === "string") {
      const long = (schema.maxLength || 0) > 200 || /text|content|body|code|query/i.test(name);
      const inp = long ? el("textarea", { id, name, required }) : el("input", {
        type: schema.format === "uri" ? "url" : schema.format === "email" ? "email" : "text", id, name, required });
      if (schema.default !== undefined) inp.value = String(schema.default);
      return {
        node: el("div", { class: "field" }, el("label", { for: id, text: title + mark }, hint), inp),
        get: () => (inp.value === "" ? undefined : inp.value),
        set: (v) => { inp.value = String(v); },
      };
    }
    // Anything else (unions, free objects, tuples): JSON.
    const ta = el("textarea", { id, name, placeholder: "JSON" });
    if (schema.default !== undefined) ta.value = pretty(schema.default);
    return {
      node: el("div", { class: "field" }, el("label", { for: id, text: `${title}${mark} (JSON)` }, hint), ta),
      get: () => (ta.value.trim() === "" ? undefined : JSON.parse(ta.value)),
      set: (v) => { ta.value = pretty(v); },
    };
  }

  // ---- results ----
  function contentItem(c) {
    const box = el("div", { class: "content" });
    switch (c.type) {
      case "text": box.append(el("pre", { text: c.text })); break;
      case "image": box.append(el("img", { src: `data:${c.mimeType};base64,${c.data}`, alt: `image (${c.mimeType}) from the tool` })); break;
      case "audio": box.append(el("audio", { controls: true, src: `data:${c.mimeType};base64,${c.data}` })); break;
      case "resource": box.append(resourceContents(c.resource || {})); break;
      case "resource_link": box.append(el("p", { text: `link: ${c.name || ""} ${c.uri}${c.mimeType ? " (" + c.mimeType + ")" : ""}` })); break;
      default: box.append(el("pre", { text: pretty(c) }));
    }
    return box;
  }
  function resourceContents(r) {
    const box = el("div", {}, el("p", { class: "hint", text: `${r.uri || ""}${r.mimeType ? " (" + r.mimeType + ")" : ""}` }));
    if (typeof r.text === "string") box.append(el("pre", { text: r.text }));
    else if (typeof r.blob === "string") {
      if ((r.mimeType || "").startsWith("image/")) box.append(el("img", { src: `data:${r.mimeType};base64,${r.blob}`, alt: `image ${r.uri || ""}` }));
      else if ((r.mimeType || "").startsWith("audio/")) box.append(el("audio", { controls: true, src: `data:${r.mimeType};base64,${r.blob}` }));
      else box.append(el("p", { text: `binary, ${Math.floor(r.blob.length * 3 / 4)} bytes` }));
    }
    return box;
  }
  function renderResult(result) {
    const box = el("div");
    for (const c of result.content || []) box.append(contentItem(c));
    if (result.structuredContent !== undefined) {
      box.append(el("p", { class: "hint", text: tr("Structured content") }), el("pre", { text: pretty(result.structuredContent) }));
    }
    return box;
  }

  // ---- resources and templates ----
  async function loadResources() {
    try { picks($("insp-resources"), await all("resources/list", "resources"), (r) => r.name || r.uri, showResource); }
    catch (e) { clear($("insp-resources")).append(el("li", { class: "muted", text: e.message })); }
    try { picks($("insp-templates"), await all("resources/templates/list", "resourceTemplates"), (t) => t.name || t.uriTemplate, showTemplate); }
    catch (e) { clear($("insp-templates")).append(el("li", { class: "muted", text: e.message })); }
  }
  $("insp-resources-refresh").addEventListener("click", loadResources);
  async function readInto(pane, uri) {
    const out = el("div", { class: "result" }, el("p", { class: "muted", role: "status", text: `${tr("reading")} ${uri}…` }));
    pane.append(out);
    try {
      const r = await rpc("resources/read", { uri });
      clear(out);
      for (const c of r.contents || []) out.append(resourceContents(c));
    } catch (e) { out.classList.add("is-error"); clear(out).append(el("p", { text: `${tr("failed")}: ${e.message}` })); }
  }
  function showResource(r) {
    const pane = clear($("insp-resource"));
    pane.append(el("h2", { text: r.name || r.uri }), el("p", { class: "hint", text: r.uri }));
    if (r.description) pane.append(el("p", { text: r.description }));
    readInto(pane, r.uri);
  }
  function showTemplate(t) {
    const pane = clear($("insp-resource"));
    pane.append(el("h2", { text: t.name || t.uriTemplate }), el("p", { class: "hint", text: t.uriTemplate }));
    if (t.description) pane.append(el("p", { text: t.description }));
    const vars = Array.from(new Set((t.uriTemplate.match(/\{[^}]+\}/g) || []).map((v) => v.replace(/[{}+#./;?&*]/g, "").split(",")[0])));
    const form = el("form");
    const inputs = vars.map((v) => { const id = nextId("v"); const i = el("input", { type: "text", id, required: true }); form.append(el("label", { for: id, text: v }), i); return [v, i]; });
    form.append(el("p", {}, el("button", { type: "submit", class: "primary", text: tr("Read") })));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      let uri = t.uriTemplate;
      for (const [v, i] of inputs) uri = uri.replace(new RegExp(`\\{[+#./;?&]?${v}\\*?\\}`), encodeURIComponent(i.value));
      readInto(pane, uri);
    });
    pane.append(form);
  }

  // ---- prompts ----
  async function loadPrompts() {
    try { picks($("insp-prompts"), await all("prompts/list", "prompts"), (p) => p.title ? `${p.name} — ${p.title}` : p.name, showPrompt); }
    catch (e) { clear($("insp-prompts")).append(el("li", { class: "muted", text: e.message })); }
  }
  $("insp-prompts-refresh").addEventListener("click", loadPrompts);
  function showPrompt(p) {
    const pane = clear($("insp-prompt"));
    pane.append(el("h2", { text: p.name }));
    if (p.description) pane.append(el("p", { text: p.description }));
    const form = el("form");
    const inputs = (p.arguments || []).map((a) => {
      const id = nextId("a");
      const i = el("input", { type: "text", id, required: a.required });
      form.append(el("label", { for: id, text: `${a.name}${a.required ? " *" : ""}` }, a.description ? el("span", { class: "hint", text: ` ${a.description}` }) : null), i);
      return [a.name, i];
    });
    form.append(el("p", {}, el("button", { type: "submit", class: "primary", text: tr("Get prompt") })));
    const out = el("div", { "aria-live": "polite" });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const args = {};
      for (const [k, i] of inputs) if (i.value !== "") args[k] = i.value;
      const box = el("div", { class: "result" });
      out.prepend(box);
      try {
        const r = await rpc("prompts/get", { name: p.name, arguments: args });
        if (r.description) box.append(el("p", { class: "hint", text: r.description }));
        for (const m of r.messages || []) {
          box.append(el("p", {}, el("strong", { text: m.role })));
          box.append(contentItem(m.content || {}));
        }
      } catch (e) { box.classList.add("is-error"); box.append(el("p", { text: `${tr("failed")}: ${e.message}` })); }
    });
    pane.append(form, out);
  }

  // ---- ping ----
  const pings = [];
  $("insp-ping").addEventListener("click", async () => {
    const t0 = performance.now();
    try {
      await rpc("ping", {});
      const ms = performance.now() - t0;
      pings.unshift(ms);
      if (pings.length > 20) pings.pop();
      $("insp-ping-last").textContent = `${ms.toFixed(1)} ms`;
      const ol = clear($("insp-pings"));
      for (const p of pings) ol.append(el("li", { text: `${p.toFixed(1)} ms` }));
    } catch (e) { $("insp-ping-last").textContent = `${tr("failed")}: ${e.message}`; }
  });
})();
