// The browser half of crates/server/tests/ui_registry_agents.rs (`registry_and_agents_pages_in_a_real_browser`):
// drives headless Chromium through the registry and agents pages of a real slipway server
// (a registry with pushed images, the embedded agent running a job that waits for GO_FILE).
//
// Inputs (environment): BASE_URL, RUN_ID (the run whose job the embedded agent holds),
// GO_FILE (creating it lets that job finish), INDEX_DIGEST (the index tag `multi` points at),
// CHROMIUM, SCREENSHOTS (a directory, optional). Exits non-zero with the failed check's message.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
const BASE = env('BASE_URL');
const RUN = env('RUN_ID');
const GO = env('GO_FILE');
const INDEX = env('INDEX_DIGEST');
const SHOTS = process.env.SCREENSHOTS || '';

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok - ${msg}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  // --- sign in (a user without a password signs in with its token).
  await page.goto(`${BASE}/registry`);
  check(new URL(page.url()).pathname === '/login', 'the registry page needs a session');
  await page.fill('#name', 'root');
  await page.fill('#password', 'root-token');
  await page.press('#password', 'Enter');
  await page.waitForURL((u) => u.pathname === '/registry');
  check(true, 'signed in, back on the registry page');

  // --- the registry: repositories, then a repository's tags (by keyboard).
  const repoLink = page.locator('table.registry a[href="/registry/team/app"]');
  check(await repoLink.count() === 1, 'the repository is listed');
  const row = await page.locator('table.registry tr', { has: page.locator('a[href="/registry/team/app"]') }).innerText();
  check(/\t3\t/.test(row), `team/app has 3 tags (${JSON.stringify(row)})`);
  await repoLink.focus();
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/registry/team/app');
  const multi = page.locator('table.tags tr', { has: page.locator('code', { hasText: /^multi$/ }) });
  check(await multi.locator(`[data-digest="${INDEX}"]`).count() === 1, 'the index tag shows its digest');
  const multiText = await multi.innerText();
  check(multiText.includes('index') && multiText.includes('linux/amd64, linux/arm64/v8'), 'an index shows its platforms');
  check(multiText.includes('production'), 'and the deployment that used one of its images');
  const runLink = multi.locator('a[href^="/runs/"]').first();
  check(await runLink.count() === 1, 'the deployment links to its run');
  await shot(page, 'registry');

  // --- narrow screen: the page itself does not scroll sideways (tables scroll inside).
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no sideways scrolling of the page at 375px (overflow ${overflow}px)`);
  await page.setViewportSize({ width: 1280, height: 900 });

  // --- agents: the embedded agent is busy with the run's job; the page follows live.
  await page.goto(`${BASE}/agents`);
  const busy = page.locator('tr[data-state="busy"]');
  check(await busy.count() === 1, 'one agent is busy');
  check(await busy.locator(`a[href^="/runs/${RUN}?job="]`).count() === 1, 'its current job links to the run');
  await shot(page, 'agents');
  await page.evaluate(() => { window.__sameDocument = 1; });
  fs.writeFileSync(GO, 'go');
  await page.waitForSelector('tr[data-state="online"]', { timeout: 60000 });
  check(await page.locator('tr[data-state="busy"]').count() === 0, 'when the job ends the agent turns online without a reload');
  check(await page.evaluate(() => window.__sameDocument === 1), 'the page was swapped in place, not reloaded');

  // --- dark mode follows the system.
  await page.emulateMedia({ colorScheme: 'dark' });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg !== 'rgb(255, 255, 255)', `dark background in dark mode (${bg})`);
  await shot(page, 'agents-dark');

  // --- an environment through the admin form: a refused form keeps what was typed.
  await page.emulateMedia({ colorScheme: 'light' });
  await page.goto(`${BASE}/admin/environments/new`);
  await page.fill('#env-name', 'staging');
  await page.selectOption('#env-repository', 'team/app');
  await page.fill('#env-reviewers', 'root');
  await page.fill('#env-wait_timer', 'soon');
  await page.press('#env-wait_timer', 'Enter');
  await page.waitForSelector('p.error[role="alert"]');
  const message = await page.locator('p.error[role="alert"]').innerText();
  check(message.includes('wait_timer'), `the refusal names the field (${message})`);
  check(await page.inputValue('#env-name') === 'staging' && await page.inputValue('#env-reviewers') === 'root'
    && await page.inputValue('#env-repository') === 'team/app', 'what was typed is kept');
  check(await page.getAttribute('#env-wait_timer', 'aria-invalid') === 'true', 'the field in error is marked');
  await page.fill('#env-wait_timer', '10s');
  await page.press('#env-wait_timer', 'Enter');
  await page.waitForURL((u) => u.pathname === '/admin/environments/edit' && u.searchParams.get('name') === 'staging');
  check(await page.inputValue('#env-wait_timer') === '10s', 'saved, and the edit page shows the rules');
  await page.fill('input[name="variable_name"]', 'REGION');
  await page.fill('input[name="variable_value"]', 'eu-1');
  await page.press('input[name="variable_value"]', 'Enter');
  await page.waitForSelector('table.settings code:text-is("eu-1")');
  check(true, 'a variable is added');
  await shot(page, 'admin-environment');
  await page.goto(`${BASE}/admin/environments`);
  const envRow = await page.locator('tr[data-environment="staging"]').innerText();
  check(envRow.includes('team/app') && envRow.includes('API') && envRow.includes('REGION'), `listed as defined through the API (${envRow})`);

  check(errors.length === 0, `no script errors (${errors.join('; ')})`);
} catch (e) {
  failed = true;
  console.error(String(e && e.stack || e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
