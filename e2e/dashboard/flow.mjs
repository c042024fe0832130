// The dashboard in a real browser: Debian's Chromium driven by playwright-core, as a new
// user — sign up, import servers, make a namespace, an endpoint and a key, revoke a key
// after confirming — with axe-core run on every page (no serious or critical violation)
// and a screenshot of every page in both themes. Started by crates/metamcp-it/tests/it/browser.rs
// with METAMCP_URL, IMPORT_JSON and SCREENSHOT_DIR; prints one JSON line with what it made.
import { readFileSync, mkdirSync } from "node:fs";
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
  await Promise.all([page.waitForURL("**/namespaces?done=created"), page.click("form[action='/namespaces'] button")]);
  await check("namespaces");

  await page.goto(`${base}/endpoints`);
  await page.fill("input[name=name]", "main");
  await page.selectOption("select[name=namespace]", "main");
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

  await page.goto(`${base}/namespaces/main`);
  await check("namespace");
  await page.goto(`${base}/logs`);
  await page.waitForFunction(() => document.getElementById("live-state").textContent === "live");
  await check("live-logs");
  await page.goto(`${base}/settings`);
  await check("settings");
  await page.goto(`${base}/servers/alpha/logs`);
  await check("logs");

  // The theme switch flips and remembers.
  await page.click("[data-theme-toggle]");
  const theme = await page.evaluate(() => document.documentElement.dataset.theme);
  if (theme !== "dark") problems.push(`theme toggle gave ${theme}`);

  console.log(JSON.stringify({ ok: problems.length === 0, problems, revokedKey: oldKey }));
} catch (e) {
  problems.push(`flow failed: ${e.message}`);
  console.log(JSON.stringify({ ok: false, problems }));
} finally {
  await browser.close();
}
process.exit(problems.length === 0 ? 0 : 1);
