// The browser half of crates/server/tests/ui_browser.rs: drives headless Chromium through the
// web UI of a real slipway server the Rust test started (with a real git repository, the
// embedded agent running the jobs, and a production environment that needs alice).
//
// Inputs (environment): BASE_URL, RUN_ID (the pushed run), BIG_RUN_ID (a finished run whose
// job has a 100,000-line log), GO_FILE (creating it lets the build job finish), CHROMIUM,
// SCREENSHOTS (a directory, optional). Prints `FIGURES {json}` with the measured timings.
// Exits non-zero with the failed check's message.
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
const BIG = env('BIG_RUN_ID');
const GO = env('GO_FILE');
const SHOTS = process.env.SCREENSHOTS || '';
const figures = {};

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok - ${msg}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

const nodeState = (page, key) => page.locator(`svg.graph a.node[data-job-key="${key}"]`).getAttribute('data-state');
async function waitState(page, key, state, timeout = 90000) {
  await page.waitForSelector(`svg.graph a.node[data-job-key="${key}"][data-state="${state}"]`, { timeout });
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
  page.on('dialog', (d) => d.accept());

  // --- sign-in: a page needs a session; a wrong password keeps the name; then alice signs in.
  await page.goto(`${BASE}/runs/${RUN}`);
  check(new URL(page.url()).pathname === '/login', 'an anonymous visitor is sent to the sign-in page');
  await shot(page, 'sign-in');
  await page.fill('#name', 'alice');
  await page.fill('#password', 'wrong');
  await page.click('.login button[type=submit]');
  await page.waitForSelector('#login-error', { timeout: 10000 });
  check(true, 'a wrong password is refused with a message');
  check((await page.inputValue('#name')) === 'alice', 'the refused form keeps the typed user name');
  await page.fill('#password', 'correct horse');
  await page.click('.login button[type=submit]');
  await page.waitForURL(`${BASE}/runs/${RUN}`);
  check(true, 'alice signs in with her password and lands on the run she asked for');

  // --- the run while it runs: boxes by state, icons, the log streaming by SSE.
  await waitState(page, 'build', 'running');
  check((await page.locator('svg.graph a.node[data-job-key="build"] text.icon').textContent()) === '●', 'a running job has the running icon');
  check((await nodeState(page, 'production')) === 'pending', 'production is pending while build runs');
  check((await page.locator('svg.graph a.node[data-job-key="production"] text.icon').textContent()) === '○', 'a pending job has the pending icon');
  const runningColour = await page.locator('svg.graph a.node[data-job-key="build"] rect').evaluate((r) => getComputedStyle(r).stroke);
  await page.waitForFunction(() => document.querySelector('#log') && document.querySelector('#log').textContent.includes('waiting for the go file'), null, { timeout: 60000 });
  check(true, 'log lines of the running step arrive live (SSE)');
  check(await page.evaluate(() => window.__xss === undefined), 'a <script> in the commit message does not run');
  check((await page.locator('.run-head .meta').textContent()).includes('<script>window.__xss=1</script>'), 'the commit message is shown as text');
  check(await page.locator('.log .c32').count() > 0, 'ANSI colours are rendered');
  await shot(page, 'run-running');

  fs.writeFileSync(GO, 'go\n');
  await waitState(page, 'build', 'success');
  const successColour = await page.locator('svg.graph a.node[data-job-key="build"] rect').evaluate((r) => getComputedStyle(r).stroke);
  check(runningColour !== successColour, `the box changes colour with its state (${runningColour} -> ${successColour})`);
  check((await page.locator('svg.graph a.node[data-job-key="build"] text.icon').textContent()) === '✓', 'a succeeded job has the check icon');
  await page.waitForFunction(() => document.querySelector('#log').textContent.includes('built after the go file'), null, { timeout: 30000 });
  check(true, 'the rest of the log streams in after the step continues');

  await waitState(page, 'test', 'success');
  await waitState(page, 'production', 'waiting');
  check((await page.locator('svg.graph a.node[data-job-key="production"] text.icon').textContent()) === '‖', 'a job waiting for approval has the pause icon');
  check((await page.locator('.approval .reviewers').textContent()).includes('alice'), 'the approval panel names who may approve');
  await shot(page, 'run-waiting');
  // Groups: `::endgroup::` is not shown and closes the fold (folding the group hides only its lines).
  await page.click('svg.graph a.node[data-job-key="build"]');
  await page.waitForURL(/\?job=\d+/);
  await page.waitForSelector('#log[data-complete="true"]', { timeout: 30000 });
  check(!(await page.locator('#log').textContent()).includes('::endgroup::'), 'the end-of-group marker is not shown');
  await page.locator('#log .row.group', { hasText: 'Toolchain' }).click();
  await page.waitForFunction(() => !document.getElementById('log').textContent.includes('rustc 1.95'), null, { timeout: 5000 });
  check(true, 'folding the group hides its lines');
  check((await page.locator('#log').textContent()).includes('green compile output'), 'the line after ::endgroup:: is outside the fold');
  await page.locator('#log .row.group', { hasText: 'Toolchain' }).click();
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('rustc 1.95'), null, { timeout: 5000 });
  check(true, 'unfolding shows the group again');
  // Timestamps: off by default, the toggle shows each line's time (local, from the agent's clock).
  check((await page.locator('#log .row .ts').count()) === 0, 'no timestamps by default');
  await page.click('#log-times');
  await page.waitForSelector('#log .row .ts', { timeout: 5000 });
  const ts = await page.locator('#log .row .ts').first().textContent();
  check(/^\d\d:\d\d:\d\d\.\d{3}$/.test(ts), `Show timestamps shows a time per line (${ts})`);
  check((await page.getAttribute('#log-times', 'aria-pressed')) === 'true', 'the toggle says it is on');
  await page.click('#log-times');
  // The job summary: markdown rendered, raw HTML shown as text.
  await page.waitForSelector('section.summary h3:has-text("Build report")', { timeout: 30000 });
  check((await page.locator('section.summary strong').first().textContent()) === 'rustc', 'the step summary markdown is rendered');
  check(await page.evaluate(() => window.__xss2 === undefined) && (await page.locator('section.summary').textContent()).includes('<script>'),
    'HTML in a step summary is shown as text, never run');

  // --- keyboard: Tab reaches the graph; Enter on a box selects that job.
  await page.locator('svg.graph a.node[data-job-key="test"]').focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(/\?job=\d+/);
  check((await page.locator('section.job h2').textContent()).includes('test'), 'Enter on a focused job box shows that job');
  let tabs = 0, reached = false;
  await page.locator('body').focus();
  for (; tabs < 40 && !reached; tabs++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement && document.activeElement.matches('button[data-action="approve"]'));
  }
  check(reached, `the approve button is reachable by keyboard (${tabs} Tab presses)`);

  // --- approve with the button: recorded with the user; production runs and succeeds.
  await page.fill('input.comment', 'ship it');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await waitState(page, 'production', 'success');
  await page.waitForSelector('#live[data-state="success"]', { timeout: 60000 });
  check(true, 'after the approval production deploys and the run succeeds (live, no reload)');
  await shot(page, 'run-done');

  // --- environments: production now shows this run's deployment, approved by alice.
  await page.goto(`${BASE}/environments`);
  const prod = page.locator('section.env[data-environment="production"] table.current');
  check((await prod.textContent()).includes('alice'), 'the environments page shows production approved by alice');
  check((await prod.locator('a').first().textContent()).includes(`run ${RUN}`), 'production shows the run that deployed it');
  await shot(page, 'environments');

  await page.goto(`${BASE}/`);
  check((await page.locator('td .badge').first().getAttribute('data-state')) === 'success', 'the repositories page shows the latest run of main as succeeded');
  await shot(page, 'repositories');
  await page.goto(`${BASE}/repos/team/app?status=failure`);
  check((await page.locator('.empty').textContent()).includes('No runs match'), 'the runs list filters by status');
  await page.goto(`${BASE}/runs/999999`);
  check((await page.locator('h1').textContent()).includes('404'), 'an unknown run is a 404 page');

  // --- a 100,000-line log: incremental rendering keeps the DOM small and the page usable.
  const t0 = Date.now();
  await page.goto(`${BASE}/runs/${BIG}`);
  figures.big_run_dom_content_loaded_ms = Date.now() - t0;
  const fcp = await page.evaluate(() => new Promise((resolve) => {
    const seen = performance.getEntriesByName('first-contentful-paint')[0];
    if (seen) return resolve(seen.startTime);
    new PerformanceObserver((list) => {
      const e = list.getEntriesByName('first-contentful-paint')[0];
      if (e) resolve(e.startTime);
    }).observe({ type: 'paint', buffered: true });
    setTimeout(() => resolve(null), 5000);
  }));
  figures.big_run_first_contentful_paint_ms = fcp && Math.round(fcp);
  await page.waitForSelector('#log[data-complete="true"]', { timeout: 120000 });
  await page.waitForFunction(() => document.getElementById('log-count').textContent === '100001 lines' || document.getElementById('log-count').textContent === '100000 lines', null, { timeout: 60000 });
  figures.big_log_all_lines_loaded_ms = Date.now() - t0;
  check((await page.locator('svg.graph a.node').count()) === 50, 'the big run shows its 50-job graph');
  // The floor for loading the log: fetching the same lines as one plain-text response.
  figures.big_log_raw_fetch_ms = await page.evaluate(async () => {
    const s = performance.now();
    const text = await (await fetch(`/ui/jobs/${document.getElementById('log').dataset.job}/log`)).text();
    if (text.split('\n').length < 100000) throw new Error('short raw log');
    return Math.round(performance.now() - s);
  });
  const rows = await page.locator('#log .row').count();
  check(rows > 0 && rows < 200, `only the visible window of the 100,000-line log is in the DOM (${rows} rows)`);
  const t1 = Date.now();
  await page.fill('#log-search', 'line 77777 ');
  await page.waitForFunction(() => document.getElementById('log-matches').textContent === '1/1');
  figures.big_log_search_ms = Date.now() - t1;
  check(await page.locator('#log .row.current').isVisible(), 'search finds a line deep in the log and scrolls to it');
  const t2 = Date.now();
  await page.evaluate(() => { location.hash = '#L50000'; });
  await page.waitForSelector('#log .row.target a#L50000');
  figures.big_log_line_link_ms = Date.now() - t2;
  check(true, 'a line link (#L50000) scrolls to that line');
  const frame = await page.evaluate(async () => {
    const el = document.getElementById('log');
    const times = [];
    for (let i = 0; i < 30; i++) {
      const s = performance.now();
      el.scrollTop += 4000;
      await new Promise((r) => requestAnimationFrame(() => r()));
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  });
  figures.big_log_scroll_frame_median_ms = Math.round(frame * 10) / 10;
  check(frame < 1000, `scrolling the big log repaints (median frame ${frame.toFixed(1)} ms)`);
  await page.locator('#log').focus();
  await page.keyboard.press('Escape');
  await page.keyboard.press('/');
  check(await page.evaluate(() => document.activeElement.id === 'log-search'), '/ focuses the log search');
  await shot(page, 'big-log');

  // --- a narrow screen: nothing overflows the page sideways; the graph scrolls in its box.
  const narrow = await browser.newContext({ viewport: { width: 375, height: 800 }, storageState: await context.storageState() });
  const phone = await narrow.newPage();
  for (const p of ['/', `/runs/${RUN}`, '/environments', '/repos/team/app']) {
    await phone.goto(`${BASE}${p}`);
    const over = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(over <= 1, `${p} fits a 375px-wide screen (overflow ${over}px)`);
  }
  await shot(phone, 'run-narrow');
  // Dark mode renders with the dark palette.
  const dark = await browser.newContext({ colorScheme: 'dark', viewport: { width: 1280, height: 900 }, storageState: await context.storageState() });
  const dp = await dark.newPage();
  await dp.goto(`${BASE}/runs/${RUN}`);
  const bg = await dp.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg === 'rgb(13, 17, 23)', `dark mode uses the dark background (${bg})`);
  await shot(dp, 'run-dark');

  check(errors.length === 0, `no script errors on the pages (${errors.join('; ')})`);
} catch (e) {
  failed = true;
  console.error(String(e && e.stack ? e.stack : e));
} finally {
  console.log(`FIGURES ${JSON.stringify(figures)}`);
  await browser.close();
}
process.exit(failed ? 1 : 0);
