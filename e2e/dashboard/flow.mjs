// The dashboard in a real browser: Debian's Chromium driven by playwright-core, as a new
// user — sign up, import the fixture server and server-everything, make a namespace, an
// endpoint and a key, revoke a key after confirming, disable one tool and rename another,
// run the renamed tool in the inspector and watch its progress and result, read the
// server's logs, keep a namespace and endpoint private, then sign up as a member and find
// them absent — with axe-core run on every page (no serious or critical violation) and a
// screenshot of every page in both themes. Started by crates/metamcp-it/tests/it/browser.rs
// with METAMCP_URL, IMPORT_JSON and SCREENSHOT_DIR; prints one JSON line with what it made.
import { readFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const base = process.env.METAMCP_URL;
const shots = process.env.SCREENSHOT_DIR;
const importJson = process.env.IMPORT_JSON;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

const problems = [];
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("dialog", (d) => d.accept());

async function check(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  for (const v of result) {
    if (v.impact === "serious" || v.impact === "critical") {
      problems.push(`axe ${name}: ${v.id} (${v.impact}, ${v.nodes} nodes)`);
    }
  }
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: `${shots}/${name}-${scheme}.png`, fullPage: true });
  }
  await page.emulateMedia({ colorScheme: "light" });
}

function expectUrl(path) {
  const u = new URL(page.url());
  if (u.pathname + u.search !== path) problems.push(`expected ${path}, at ${u.pathname}${u.search}`);
}

let receiver = null;
try {
  await page.goto(`${base}/`);
  expectUrl("/login?return_to=%2F");
  await check("login");
  await page.click("a[href='/register']");
  await check("register");
  await page.fill("input[name=name]", "Ada");
  await page.fill("input[name=email]", "ada@example.com");
  await page.fill("input[name=password]", "correct horse battery");
  await Promise.all([page.waitForURL("**/account"), page.click("button[type=submit]")]);
  await check("account");

  await page.goto(`${base}/servers`);
  await check("servers-empty");
  await page.fill("textarea[name=json]", importJson);
  await Promise.all([page.waitForURL("**/servers?done=imported"), page.click("form[action='/servers/import'] button")]);
  await check("servers");

  await page.goto(`${base}/namespaces`);
  await page.fill("input[name=name]", "main");
  await page.check("input[name=server][value=alpha]");
  await page.check("input[name=server][value=everything]");
  await Promise.all([page.waitForURL("**/namespaces?done=created"), page.click("form[action='/namespaces'] button")]);
  // A private one, which a member must not see.
  await page.fill("input[name=name]", "secret");
  await page.check("input[name=server][value=alpha]");
  await page.selectOption("select[name=visibility]", "private");
  await Promise.all([page.waitForURL("**/namespaces?done=created"), page.click("form[action='/namespaces'] button")]);
  await check("namespaces");

  await page.goto(`${base}/endpoints`);
  await page.fill("input[name=name]", "main");
  await page.selectOption("select[name=namespace]", "main");
  await page.check("form[action='/endpoints'] input[name=oauth]");
  await Promise.all([page.waitForURL("**/endpoints?done=created"), page.click("form[action='/endpoints'] button")]);
  await page.fill("input[name=name]", "secret");
  await page.selectOption("select[name=namespace]", "secret");
  await page.selectOption("select[name=visibility]", "private");
  await Promise.all([page.waitForURL("**/endpoints?done=created"), page.click("form[action='/endpoints'] button")]);
  await check("endpoints");

  await page.goto(`${base}/keys`);
  for (const name of ["laptop", "old"]) {
    await page.fill("input[name=name]", name);
    await Promise.all([page.waitForLoadState("load"), page.click("form[action='/keys'] button")]);
  }
  const oldKey = (await page.textContent("#new-key")).trim();
  await check("keys-created");
  // Revoking asks first (the dialog is accepted above).
  await Promise.all([page.waitForURL("**/keys?done=revoked"), page.click("form[action='/keys/old/revoke'] button")]);
  await check("keys");

  // OAuth: an MCP client registers itself, the user allows it on the consent page (a real
  // form post answered by a redirect to the client: no CSP form-action may block it), the
  // client gets tokens, and the app shows under Connected apps until it is revoked there.
  const reg = await (await fetch(`${base}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ redirect_uris: ["http://127.0.0.1/callback"], client_name: "Flow Client" }),
  })).json();
  const verifier = "flow-verifier-0123456789-0123456789-0123456789";
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  // The client's loopback redirect: a real listener (a route cannot catch a redirect's target).
  let callback = null;
  receiver = createServer((req, res) => {
    // why: the browser also asks this origin for /favicon.ico.
    if (req.url.startsWith("/callback")) callback = `http://127.0.0.1${req.url}`;
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("the client got its answer");
  });
  await new Promise((ok) => receiver.listen(0, "127.0.0.1", ok));
  const redirect = `http://127.0.0.1:${receiver.address().port}/callback`;
  const authorize = `${base}/oauth/authorize?` + new URLSearchParams({
    response_type: "code", client_id: reg.client_id, redirect_uri: redirect, code_challenge: challenge,
    code_challenge_method: "S256", state: "flow-state", resource: `${base}/metamcp/main/mcp`, scope: "mcp",
  });
  await page.goto(authorize);
  if (!(await page.textContent("main")).includes("Flow Client")) problems.push("the consent page does not name the client");
  await check("oauth-consent");
  await Promise.all([page.waitForURL(`${redirect}?**`), page.click("#consent button[value=approve]")]);
  const answer = callback ? new URL(callback) : null;
  if (!answer || answer.searchParams.get("state") !== "flow-state" || answer.searchParams.get("iss") !== base) {
    problems.push(`the consent's redirect: ${callback}`);
  } else {
    const tok = await (await fetch(`${base}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: answer.searchParams.get("code"), redirect_uri: redirect,
        client_id: reg.client_id, code_verifier: verifier,
      }),
    })).json();
    if (!tok.access_token) problems.push(`no access token: ${JSON.stringify(tok)}`);
  }
  await page.goto(`${base}/apps`);
  if (!(await page.textContent("main")).includes("Flow Client")) problems.push("Connected apps does not list the client");
  await check("apps");
  await Promise.all([page.waitForURL("**/apps?done=revoked-grant"), page.click("form[action^='/apps/grants/'] button")]);

  // The inspector connects to the endpoint (which starts the servers and discovers tools).
  async function connect() {
    await page.goto(`${base}/inspector?endpoint=main`);
    await page.click("#insp-connect-btn");
    await page.waitForFunction(() => document.getElementById("insp-state").textContent === "connected", null, { timeout: 60000 });
    await page.waitForFunction(() => document.querySelectorAll("#insp-tools button").length > 0, null, { timeout: 60000 });
    return page.$$eval("#insp-tools button", (bs) => bs.map((b) => b.textContent.split(" — ")[0]));
  }
  let tools = await connect();
  for (const t of ["alpha__slow", "everything__echo"]) {
    if (!tools.includes(t)) problems.push(`inspector lists no ${t}: ${tools.join(", ")}`);
  }

  // The namespace's tool table: disable everything__echo, rename alpha__slow to count_up.
  // The gateway records what it discovered off the request path: wait for it.
  for (let i = 0; ; i++) {
    await page.goto(`${base}/namespaces/main`);
    if (await page.$("input[name=tool][value='everything__echo']")) break;
    if (i === 40) { problems.push("everything's tools never reached the tool table"); break; }
    await page.waitForTimeout(250);
  }
  await check("namespace");
  await page.check("input[name=tool][value='everything__echo']");
  await Promise.all([page.waitForURL("**/namespaces/main?done=tools"), page.click("button[name=action][value=disable]")]);
  const row = page.locator("tr[data-exposed='alpha__slow']");
  await row.locator("summary").click();
  // A name another tool has is flagged before saving.
  await row.locator("input[name=name]").fill("echo");
  if (!(await row.locator("[data-collision-note]").textContent()).includes("alpha__echo")) problems.push("no collision shown for alpha__echo");
  await row.locator("input[name=name]").fill("count_up");
  await Promise.all([page.waitForURL("**/namespaces/main?done=tools"), row.locator("button[type=submit]").first().click()]);
  await check("namespace-shaped");

  // The renamed tool runs in the inspector, showing its progress, then its result.
  tools = await connect();
  if (!tools.includes("alpha__count_up")) problems.push(`renamed tool missing: ${tools.join(", ")}`);
  if (tools.includes("everything__echo") || tools.includes("alpha__slow")) problems.push(`disabled or old names still listed: ${tools.join(", ")}`);
  await page.click("#insp-tools button:text-is('alpha__count_up')");
  await page.fill("#insp-tool input[name=steps]", "4");
  await page.fill("#insp-tool input[name=delay_ms]", "400");
  await page.click("#insp-tool button[type=submit]");
  await page.waitForFunction(() => { const r = document.querySelector("#insp-tool .result"); return r && r.dataset.progress; }, null, { timeout: 20000 });
  const during = await page.textContent("#insp-tool .result p[role=status]");
  if (!/progress/.test(during)) problems.push(`no progress shown while running: ${during}`);
  await page.waitForFunction(() => /^done/.test(document.querySelector("#insp-tool .result p[role=status]").textContent), null, { timeout: 20000 });
  const result = await page.textContent("#insp-tool .result");
  await check("inspector");
  // Ping keeps a latency history.
  await page.click("#tab-ping");
  await page.click("#insp-ping");
  await page.waitForFunction(() => document.querySelectorAll("#insp-pings li").length === 1);
  // Resources of server-everything read.
  await page.click("#tab-resources");
  await page.waitForFunction(() => document.querySelectorAll("#insp-resources button").length > 0, null, { timeout: 20000 });
  await page.click("#insp-resources button >> nth=0");
  await page.waitForFunction(() => { const r = document.querySelector("#insp-resource .result"); return r && !/reading/.test(r.textContent); }, null, { timeout: 20000 });
  if (await page.$("#insp-resource .result.is-error")) problems.push(`resource read failed: ${await page.textContent("#insp-resource .result")}`);
  // Prompts get.
  await page.click("#tab-prompts");
  await page.waitForFunction(() => document.querySelectorAll("#insp-prompts button").length > 0, null, { timeout: 20000 });
  await check("inspector-prompts");

  await page.goto(`${base}/logs`);
  await page.waitForFunction(() => document.getElementById("live-state").textContent === "live");
  await page.waitForFunction(() => /alpha/.test(document.getElementById("live-log").textContent), null, { timeout: 20000 });
  await page.selectOption("#live-level", "lifecycle");
  await check("live-logs");
  await page.goto(`${base}/settings`);
  await check("settings");
  await page.goto(`${base}/servers/alpha/logs`);
  const logText = await page.textContent("main");
  if (!logText.includes("[metamcp] started")) problems.push("alpha's log shows no start");
  await check("logs");
  await page.goto(`${base}/servers/alpha/edit`);
  await check("server-edit");
  // The language switch: Chinese, then Korean, then back to English, on the page it was on.
  await page.goto(`${base}/namespaces/main`);
  await Promise.all([page.waitForURL("**/namespaces/main"), page.click("nav.langs a[lang=zh]")]);
  if ((await page.getAttribute("html", "lang")) !== "zh" || !(await page.textContent("h1")).includes("命名空间")) problems.push("no Chinese after the switch");
  await check("namespace-zh");
  await page.click("nav.langs a[lang=ko]");
  await page.waitForFunction(() => document.documentElement.lang === "ko");
  await page.goto(`${base}/inspector`);
  await check("inspector-ko");
  await page.click("nav.langs a[lang=en]");
  await page.waitForFunction(() => document.documentElement.lang === "en");

  // A member finds none of the admin's private objects.
  const member = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const mpage = await member.newPage();
  mpage.on("pageerror", (e) => problems.push(`member page error: ${e.message}`));
  await mpage.goto(`${base}/register`);
  await mpage.fill("input[name=name]", "Bo");
  await mpage.fill("input[name=email]", "bo@example.com");
  await mpage.fill("input[name=password]", "correct horse battery");
  await Promise.all([mpage.waitForURL("**/account"), mpage.click("button[type=submit]")]);
  for (const path of ["/namespaces", "/endpoints", "/inspector", "/servers"]) {
    await mpage.goto(`${base}${path}`);
    const text = await mpage.textContent("main");
    // The private objects are called "secret": no element may name them.
    if (/>\s*secret\s*</.test(await mpage.innerHTML("main")) || /namespace secret|\/secret\b/.test(text)) {
      problems.push(`member sees a private object on ${path}`);
    }
    if (path === "/namespaces" && !/main/.test(text)) problems.push("member does not see the public namespace");
  }
  const secretNs = await mpage.goto(`${base}/namespaces/secret`);
  if (secretNs.status() !== 404) problems.push(`member opened the private namespace: ${secretNs.status()}`);
  await member.close();

  // The theme switch flips and remembers.
  await page.click("[data-theme-toggle]");
  const theme = await page.evaluate(() => document.documentElement.dataset.theme);
  if (theme !== "dark") problems.push(`theme toggle gave ${theme}`);

  console.log(JSON.stringify({ ok: problems.length === 0, problems, revokedKey: oldKey, result }));
} catch (e) {
  problems.push(`flow failed: ${e.message}`);
  console.log(JSON.stringify({ ok: false, problems }));
} finally {
  await browser.close();
  // why: closed only after the browser, which may still ask it for /favicon.ico (a reset
  // connection would be a console error).
  receiver?.close();
}
process.exit(problems.length === 0 ? 0 : 1);
