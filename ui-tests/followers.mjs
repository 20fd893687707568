// Opens N headless Chromium pages (one browser, a context each) on a run page that follows a
// live job log, keeps them open for SECONDS, then prints `FOLLOWERS {json}`: how many lines
// each page had received (proof that every page followed the log). Used by
// bench/ui-followers.sh. Inputs (environment): URL, N, SECONDS, CHROMIUM.
import { chromium } from 'playwright-core';

const URL_ = process.env.URL, N = Number(process.env.N || 50), SECONDS = Number(process.env.SECONDS || 60);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const pages = [];
const t0 = Date.now();
for (let i = 0; i < N; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const p = await ctx.newPage();
  await p.goto(URL_, { waitUntil: 'domcontentloaded' });
  pages.push(p);
}
console.error(`# ${N} pages open after ${Date.now() - t0} ms`);
console.log(`OPEN ${Date.now() - t0}`);
const start = await Promise.all(pages.map((p) => p.evaluate(() => (window.slipwayLog ? window.slipwayLog.lines.length : -1))));
await new Promise((r) => setTimeout(r, SECONDS * 1000));
const end = await Promise.all(pages.map((p) => p.evaluate(() => (window.slipwayLog ? window.slipwayLog.lines.length : -1))));
const grew = end.map((e, i) => e - start[i]);
console.log(`FOLLOWERS ${JSON.stringify({ pages: N, min_lines_gained: Math.min(...grew), max_lines_gained: Math.max(...grew) })}`);
await browser.close();
