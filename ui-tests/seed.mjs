// The browser half of `seed_path_driven_from_the_ui` in crates/server/tests/ui_browser.rs: the
// examples/ pipeline (build -> test matrix -> package + image -> staging -> production) of a
// real push, followed and driven from the web UI alone, by two users in two browser contexts:
// alice (admin, pushed the commit) and bob (maintainer, production's reviewer).
//
// Inputs (environment): BASE_URL, RUN_ID (the pushed run), CHROMIUM, SCREENSHOTS (optional).
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
const SHOTS = process.env.SCREENSHOTS || '';

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok - ${msg}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const node = (key) => `svg.graph a.node[data-job-key="${key}"]`;
async function waitState(page, key, state, timeout = 180000) {
  await page.waitForSelector(`${node(key)}[data-state="${state}"]`, { timeout });
}
async function runState(page, state, timeout = 180000) {
  await page.waitForSelector(`#live[data-state="${state}"]`, { timeout });
}

async function signIn(browser, name, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
  page.on('dialog', (d) => d.accept());
  await page.goto(`${BASE}/login`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.click('.login button[type=submit]');
  await page.waitForURL(`${BASE}/`);
  return page;
}

/// Starts the CI workflow from the "Run workflow" page; returns the new run's id.
async function runWorkflow(page, breakTests) {
  await page.goto(`${BASE}/repos/team/wordcount`);
  await page.click('a.button:has-text("Run workflow")');
  await page.waitForSelector('form.dispatch[data-workflow="ci.yml"]');
  const box = page.locator('form.dispatch[data-workflow="ci.yml"] [data-input="break-tests"]');
  check((await box.getAttribute('type')) === 'checkbox', 'a boolean input of workflow_dispatch is a checkbox');
  if (breakTests) await box.check(); else await box.uncheck();
  const before = page.url();
  await page.locator('form.dispatch[data-workflow="ci.yml"] button[type=submit]').click();
  await page.waitForURL((u) => /\/runs\/\d+$/.test(u.pathname) && u.href !== before, { timeout: 60000 });
  return Number(new URL(page.url()).pathname.split('/').pop());
}

const errors = [];
const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  // --- alice pushed: she finds the run from the repositories page and follows it.
  const alice = await signIn(browser, 'alice', 'correct horse');
  await alice.locator(`a[href="/runs/${RUN}"]`).first().click();
  await alice.waitForURL(`${BASE}/runs/${RUN}`);
  check(true, 'the pushed run is linked from the repositories page');
  check(await alice.evaluate(() => window.__xss === undefined), 'a <script> in the commit message does not run');

  // The matrix: one group box labelled `test` with a leg per suite, each with its own state.
  await alice.waitForSelector(`${node('test')}.group`, { timeout: 60000 });
  const legs = await alice.locator('svg.graph a.leg[data-job-key="test"]').evaluateAll((ls) => ls.map((l) => l.dataset.leg));
  check(legs.length === 3 && legs.includes('test (unit)') && legs.includes('test (cli)') && legs.includes('test (doc)'),
    `the test matrix is one group with its three legs (${legs.join(', ')})`);
  await waitState(alice, 'test', 'success');
  for (const leg of legs) {
    const l = alice.locator(`svg.graph a.leg[data-leg="${leg}"]`);
    check((await l.getAttribute('data-state')) === 'success' && (await l.locator('text.icon').textContent()) === '✓',
      `leg ${leg} shows success with the check icon`);
  }
  await waitState(alice, 'staging', 'success');
  await waitState(alice, 'production', 'waiting');
  check(true, 'build, test, package, image and staging succeed; production waits for approval (live)');
  const panel = alice.locator('.approval');
  check((await panel.locator('.reviewers').textContent()).includes('bob'), 'the approval panel says bob may approve');
  check((await alice.locator('.approval button[data-action="approve"]').count()) === 0 && (await panel.textContent()).includes('not a reviewer'),
    'alice (not a reviewer, and the pusher) is not offered the approve button');
  // A leg is selectable: it links to its job's log where the leg starts.
  const href = await alice.locator('svg.graph a.leg[data-leg="test (unit)"]').getAttribute('href');
  check(/^\?job=\d+(#L\d+)?$/.test(href), `a leg links to its job (${href})`);
  await alice.locator('svg.graph a.leg[data-leg="test (unit)"]').focus();
  await alice.keyboard.press('Enter');
  await alice.waitForURL(/\?job=\d+/);
  check((await alice.locator('section.job h2').textContent()).includes('test'), 'Enter on a focused leg opens its job');
  check((await alice.locator('section.job .legs-note').textContent()).includes('3 matrix legs'), 'the matrix job says its three legs run at once');
  await alice.waitForSelector('#log[data-complete="true"]', { timeout: 30000 });
  check((await alice.locator('#log').textContent()).length > 0, 'the test job log is shown');
  await alice.goto(`${BASE}/runs/${RUN}`);
  await shot(alice, 'seed-waiting');

  // --- bob approves production by keyboard.
  const bob = await signIn(browser, 'bob', 'bob-token');
  await bob.goto(`${BASE}/runs/${RUN}`);
  await bob.fill('.approval input.comment', 'release 1.2.0');
  await bob.keyboard.press('Tab');
  check(await bob.evaluate(() => document.activeElement.matches('button[data-action="approve"]')), 'Tab from the comment reaches Approve');
  await bob.keyboard.press('Enter');
  await waitState(bob, 'production', 'success');
  await runState(bob, 'success');
  check(true, 'after bob approves, production deploys and the run succeeds (live, no reload)');
  // alice's page follows without a reload too.
  await runState(alice, 'success');
  check(true, "alice's open page turns green by itself");

  // Artifacts of the run to download.
  await bob.locator(`${node('package')}`).focus();
  await bob.keyboard.press('Enter');
  await bob.waitForURL(/\?job=\d+/);
  const artifacts = await bob.locator('ul.artifacts a').evaluateAll((as) => as.map((a) => a.textContent));
  check(artifacts.includes('build') && artifacts.includes('package'), `the run's artifacts are listed (${artifacts.join(', ')})`);
  const size = await bob.evaluate(async () => (await (await fetch(document.querySelector('ul.artifacts a').getAttribute('href'))).arrayBuffer()).byteLength);
  check(size > 0, `an artifact downloads (${size} bytes)`);
  await shot(bob, 'seed-done');

  // --- the environments page: what runs where, from which commit, approved by whom.
  await bob.goto(`${BASE}/environments`);
  const prod = bob.locator('section.env[data-environment="production"] table.current');
  const prodText = await prod.textContent();
  check(prodText.includes(`run ${RUN}`) && prodText.includes('bob') && prodText.includes('alice'),
    'production shows this run, pushed by alice and approved by bob');
  check((await prod.locator('code[title]').first().textContent()).startsWith('sha256:'), 'production shows the image digest');
  await shot(bob, 'seed-environments');

  // --- Run workflow with break-tests: a leg fails, fail-fast stops the rest, package is skipped.
  const broken = await runWorkflow(alice, true);
  check(broken > Number(RUN), `the Run workflow form started run ${broken}`);
  await runState(alice, 'failure');
  check((await alice.locator(`${node('test')}`).getAttribute('data-state')) === 'failure', 'the test group shows failure');
  check(await alice.locator('svg.graph a.leg[data-job-key="test"][data-state="failure"]').count() >= 1, 'a failing leg shows failure');
  check((await alice.locator(`${node('test')} text.icon`).textContent()) === '✗', 'the failed group has the cross icon');
  check(['skipped', 'cancelled'].includes(await alice.locator(`${node('package')}`).getAttribute('data-state')), 'package does not run after the failed tests');
  await shot(alice, 'seed-failed');

  // --- a refused dispatch keeps what was typed and says why (a branch that does not exist).
  await alice.goto(`${BASE}/repos/team/wordcount/dispatch?ref=no-such-branch`);
  check((await alice.locator('[role=alert]').textContent()).includes('no-such-branch'), 'an unknown branch on the Run workflow page is an error naming it');
  check((await alice.inputValue('input[name=ref]')) === 'no-such-branch', 'the typed branch is kept');

  // --- a run that bob rejects by keyboard.
  const rejected = await runWorkflow(alice, false);
  await bob.goto(`${BASE}/runs/${rejected}`);
  await waitState(bob, 'production', 'waiting');
  await bob.fill('.approval input.comment', 'not today');
  await bob.keyboard.press('Tab');
  await bob.keyboard.press('Tab');
  check(await bob.evaluate(() => document.activeElement.matches('button[data-action="reject"]')), 'a second Tab reaches Reject');
  await bob.keyboard.press('Enter');
  await runState(bob, 'failure');
  check(['failure', 'skipped', 'cancelled'].includes(await bob.locator(`${node('production')}`).getAttribute('data-state')),
    'after the rejection production does not deploy and the run fails');
  await bob.goto(`${BASE}/environments`);
  const row = bob.locator(`section.env[data-environment="production"] table.history tr:has(a[href="/runs/${rejected}"])`);
  check((await row.locator('.badge').getAttribute('data-state')) === 'rejected', 'the environments history shows the rejected deployment');
  check((await row.textContent()).includes('alice'), 'a run started with the Run workflow form names who started it (alice) as its pusher');
  check((await bob.locator('section.env[data-environment="production"] table.current').textContent()).includes(`run ${RUN}`),
    'production still runs the approved deployment');

  // --- roll staging back to the first deployment, by keyboard (the confirm dialog is accepted).
  await alice.goto(`${BASE}/environments`);
  const back = alice.locator(`section.env[data-environment="staging"] table.history tr:has(a[href="/runs/${RUN}"]) button[data-action="rollback"]`);
  await back.focus();
  await alice.keyboard.press('Enter');
  await alice.waitForFunction(() => /rollback: done/.test(document.getElementById('action-status').textContent), null, { timeout: 30000 });
  check(true, 'the rollback button asks, then starts the rollback');
  await alice.waitForFunction(() => {
    const cur = document.querySelector('section.env[data-environment="staging"] table.current');
    return cur && /rollback to #/.test(cur.textContent);
  }, null, { timeout: 120000 });
  check(true, 'staging now runs the rollback deployment (live, no reload)');
  await shot(alice, 'seed-rollback');

  check(errors.length === 0, `no script errors on the pages (${errors.join('; ')})`);
} catch (e) {
  failed = true;
  console.error(String(e && e.stack ? e.stack : e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
