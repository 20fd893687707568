// The browser half of crates/server/tests/ui_admin_browser.rs: headless Chromium through the
// admin pages of a real slipway server (alice is an admin with a password).
//
// An admin signs in, registers a repository (a bad forge API URL first: the page keeps what
// was typed and focuses the field), adds a secret, creates a maintainer; the maintainer signs
// in and sees no admin pages. Forms are used by keyboard. Then a 375px-wide screen and dark
// mode. Inputs (environment): BASE_URL, CHROMIUM, SCREENSHOTS (optional directory).
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

// Focuses a field by its label (as a keyboard user would reach it) and types.
async function type(page, label, text, form) {
  const scope = form ? page.locator(`form#${form}`) : page;
  const field = scope.getByLabel(label, { exact: true });
  await field.focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  if (text) await page.keyboard.type(text);
}

async function signIn(page, name, password, next) {
  await page.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === next);
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

  // --- the admin signs in and reaches the admin pages from the navigation, by keyboard.
  await page.goto(`${BASE}/admin`);
  check(new URL(page.url()).pathname === '/login', 'an anonymous visitor is sent to the sign-in page');
  await signIn(page, 'alice', 'alice password', '/');
  const adminLink = page.locator('header nav a[href="/admin"]');
  check(await adminLink.count() === 1, 'an admin sees the Admin link');
  await adminLink.focus();
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/admin');
  check(await page.locator('h1').innerText() === 'Admin', 'the admin index opens');
  await page.locator('a[href="/admin/repositories"]').first().focus();
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/admin/repositories');

  // --- register a repository: a bad forge API URL first.
  await type(page, 'Name (owner/name as the forge knows it)', 'team/app', 'register');
  await type(page, 'Clone URL', 'git://127.0.0.1:9/app.git', 'register');
  await page.locator('#register-forge').selectOption('forgejo');
  await type(page, 'Forge API URL', 'ftp://forge.example', 'register');
  await type(page, 'Webhook secret', 'hook-secret-typed', 'register');
  await page.locator('#register-webhook_secret').press('Enter');
  await page.waitForSelector('#register-error');
  check((await page.locator('#register-error').innerText()).includes('request field `forge_api`'), 'the API\'s message names the field');
  check(await page.inputValue('#register-name') === 'team/app', 'the typed name is kept');
  check(await page.inputValue('#register-clone_url') === 'git://127.0.0.1:9/app.git', 'the typed clone URL is kept');
  check(await page.inputValue('#register-forge') === 'forgejo', 'the chosen forge is kept');
  check(await page.inputValue('#register-webhook_secret') === '', 'the secret is not sent back');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'register-forge_api',
    'the field in error has the focus');
  check(await page.getAttribute('#register-forge_api', 'aria-invalid') === 'true', 'the field in error is marked');
  await shot(page, 'admin-register-error');
  await type(page, 'Forge API URL', 'http://forge.example/api/v1', 'register');
  await type(page, 'Webhook secret', 'hook-secret-typed', 'register');
  await page.locator('#register-webhook_secret').press('Enter');
  await page.waitForURL((u) => u.pathname === '/admin/repositories/team/app');
  check((await page.locator('.notice').innerText()).includes('Repository registered'), 'the repository is registered');

  // --- a secret for it (write-only).
  await type(page, 'Name', 'DEPLOY_KEY', 'secret');
  await type(page, 'Value', 'ssh-key-material', 'secret');
  await page.locator('#secret-value').press('Enter');
  await page.waitForSelector('text=Secret saved.');
  check(await page.locator('table.settings code', { hasText: 'DEPLOY_KEY' }).count() === 1, 'the secret is listed by name');
  check(!(await page.content()).includes('ssh-key-material'), 'the secret\'s value is not shown');
  await shot(page, 'admin-repository');

  // --- a maintainer.
  await page.goto(`${BASE}/admin/users`);
  await type(page, 'Name', 'max', 'create');
  await page.locator('#create-role').selectOption('maintainer');
  await type(page, 'Groups', 'releasers', 'create');
  await type(page, 'Password', 'max password 1', 'create');
  await page.locator('#create-password').press('Enter');
  await page.waitForSelector('text=User max created.');
  check(await page.locator('table a[href="/admin/users/max"]').count() === 1, 'the new user is listed');
  await shot(page, 'admin-users');
  await page.goto(`${BASE}/admin`);
  check((await page.locator('table.audit').innerText()).includes('user.create'), 'the index lists the recent changes');
  await shot(page, 'admin-index');

  // --- the maintainer signs in: no admin pages for him.
  await page.locator('.who button', { hasText: 'Sign out' }).click();
  await page.waitForURL((u) => u.pathname === '/login');
  await signIn(page, 'max', 'max password 1', '/');
  check((await page.locator('.who .user').innerText()).includes('max'), 'max is signed in');
  check(await page.locator('header nav a[href="/admin"]').count() === 0, 'a maintainer sees no Admin link');
  const resp = await page.goto(`${BASE}/admin/users`);
  check(resp.status() === 403, 'a maintainer gets a 403 page for the admin pages');
  check((await page.locator('main').innerText()).includes('Only admins'), 'the 403 page says why');
  await page.goto(`${BASE}/account`);
  check((await page.locator('dl.facts').innerText()).includes('maintainer'), 'his account page shows his role');

  // --- narrow screen and dark mode (as alice).
  const narrow = await browser.newContext({ viewport: { width: 375, height: 800 }, colorScheme: 'dark' });
  const phone = await narrow.newPage();
  phone.on('pageerror', (e) => errors.push(String(e)));
  await signIn(phone, 'alice', 'alice password', '/admin/repositories/team/app');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `a 375px-wide screen needs no sideways scrolling (overflow ${overflow}px)`);
  const bg = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg === 'rgb(13, 17, 23)', `dark mode follows the colour scheme (body ${bg})`);
  const inputBg = await phone.evaluate(() => getComputedStyle(document.querySelector('#secret-name')).backgroundColor);
  check(inputBg === 'rgb(13, 17, 23)', `form fields follow dark mode (${inputBg})`);
  await shot(phone, 'admin-repository-narrow-dark');
  await narrow.close();

  check(errors.length === 0, `no script errors (${errors.join('; ')})`);
} catch (e) {
  console.error(String(e && e.stack || e));
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
