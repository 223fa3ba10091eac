#!/usr/bin/env node
// Drive Debian's /usr/bin/chromium (via npm playwright-core; never downloads a browser) through
// examples-c/wtd_browser_demo's own page, as a user would: open it in two tabs, type a message in
// each, and check that
//   - both tabs connected (WebTransport with serverCertificateHashes) and got distinct session ids,
//   - each tab shows the other tab's message (the server broadcast it) and its own,
//   - the chart has data: >= MIN_POINTS points with an RTT and datagrams/s > 0, and the canvas
//     has drawn pixels in each series' colour,
// then save a screenshot of the first tab and close both sessions with code 42, reason "bye". Prints one JSON line {ok, ...}; exit 0 if ok else 1.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');
const MIN_POINTS = 6;

const USAGE = `usage: node browser_demo_driver.mjs --page http://127.0.0.1:PORT/ [--screenshot FILE]
                 [--timeout 60] [--chromium /usr/bin/chromium] [--cache DIR] [--verbose]`;

function parseArgs(argv) {
  const a = { timeout: 60, chromium: '/usr/bin/chromium', verbose: false,
              screenshot: path.join(REPO, 'build', 'artifacts', 'browser_demo.png'),
              cache: process.env.WTD_INTEROP_CACHE || path.join(REPO, 'build', 'interop-cache') };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    switch (k) {
      case '-h': case '--help': console.log(USAGE); process.exit(0);
      case '--page': a.page = v(); break;
      case '--screenshot': a.screenshot = v(); break;
      case '--timeout': a.timeout = parseFloat(v()); break;
      case '--chromium': a.chromium = v(); break;
      case '--cache': a.cache = v(); break;
      case '--verbose': a.verbose = true; break;
      default: console.error(`unknown argument ${k}\n${USAGE}`); process.exit(2);
    }
  }
  if (!a.page) { console.error(USAGE); process.exit(2); }
  return a;
}

// Counts canvas pixels close to each series' colour (the page's SERIES colours).
function chartInk() {
  const c = document.getElementById('chart');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = { rtt: [0x1a, 0x56, 0xb0], dps: [0x13, 0x73, 0x33], loss: [0xb3, 0x26, 0x1e] };
  const out = { rtt: 0, dps: 0, loss: 0 };
  for (let i = 0; i < d.length; i += 4)
    for (const [k, [r, g, b]] of Object.entries(colours))
      if (Math.abs(d[i] - r) < 24 && Math.abs(d[i + 1] - g) < 24 && Math.abs(d[i + 2] - b) < 24) out[k]++;
  return out;
}

// page.waitForFunction with a failure message that says what was awaited.
async function waitFor(page, what, fn, arg, timeout) {
  try {
    await page.waitForFunction(fn, arg, { timeout });
  } catch (e) {
    throw new Error(`${what} (${e.message.split('\n')[0]})`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const require = createRequire(path.join(args.cache, 'node', 'package.json'));
  const { chromium } = require('playwright-core');
  const result = { ok: false };
  const deadline = setTimeout(() => {
    console.log(JSON.stringify({ ...result, ok: false, error: `driver timeout ${args.timeout}s` }));
    process.exit(1);
  }, args.timeout * 1000 + 5000);
  const t0 = Date.now();
  const left = () => Math.max(1000, args.timeout * 1000 - (Date.now() - t0));
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: args.chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync',
             // two tabs in one headless window: keep the background one's timers running
             '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
             '--disable-backgrounding-occluded-windows'],
    });
    result.browserVersion = browser.version();
    const context = await browser.newContext({ viewport: { width: 960, height: 620 } });
    const tabs = [await context.newPage(), await context.newPage()];
    tabs.forEach((p, i) => {
      p.on('console', (m) => { if (args.verbose || m.type() === 'error') console.error(`[tab${i} console.${m.type()}] ${m.text()}`); });
      p.on('pageerror', (e) => console.error(`[tab${i} pageerror] ${e.message}`));
    });
    for (const p of tabs) await p.goto(args.page);

    // 1. both connected and welcomed
    for (const p of tabs) {
      await waitFor(p, 'page never connected and got its player number',
                    () => window.__demo && (window.__demo.sessionId !== null || window.__demo.error), null, left());
      const err = await p.evaluate(() => window.__demo.error);
      if (err) throw new Error(`page could not connect: ${err}`);
    }
    result.sessions = await Promise.all(tabs.map((p) => p.evaluate(() => window.__demo.sessionId)));
    if (result.sessions[0] === result.sessions[1]) throw new Error(`both tabs got session ${result.sessions[0]}`);

    // 2. each tab types a message through the page's form
    const texts = [`hello from tab A ${process.pid}`, `hi from tab B ${process.pid} ✓`];
    for (let i = 0; i < 2; i++) {
      await tabs[i].fill('#msg', texts[i]);
      await tabs[i].click('#send');
    }
    for (let i = 0; i < 2; i++) {
      const have = () => tabs[i].evaluate(() => window.__demo.messages.map((m) => m.text)).catch(() => []);
      try {
        await waitFor(tabs[i], '', (want) => want.every((t) => window.__demo.messages.some((m) => m.text === t)),
                      texts, left());
      } catch (e) {
        throw new Error(`tab ${i} shows ${JSON.stringify(await have())}, expected both ${JSON.stringify(texts)} ${e.message}`);
      }
    }
    result.messages = await Promise.all(tabs.map((p) => p.evaluate(() => window.__demo.messages.map((m) => `${m.session}:${m.text}`))));
    result.shownInOtherTab = await Promise.all(tabs.map((p, i) =>
      p.evaluate((t) => [...document.querySelectorAll('#log li')].some((li) => li.textContent.endsWith(t)), texts[1 - i])));
    if (!result.shownInOtherTab.every(Boolean)) throw new Error('a message is in __demo but not on the page');

    // 3. the chart has data
    for (const p of tabs) {
      await waitFor(p, `chart never got ${MIN_POINTS} points with an RTT and datagrams/s > 0`,
                    (n) => window.__demo.points.filter((q) => q.rtt !== null && q.dps > 0).length >= n, MIN_POINTS, left());
    }
    const stats = await Promise.all(tabs.map((p) => p.evaluate(() => {
      const d = window.__demo;
      return { points: d.points.length, last: d.points[d.points.length - 1], pingsSent: d.pingsSent,
               pongs: d.pongs, lost: d.lost, received: d.received, players: d.players };
    })));
    result.tabs = stats;
    result.chartInk = await Promise.all(tabs.map((p) => p.evaluate(chartInk)));
    for (const [i, ink] of result.chartInk.entries()) {
      for (const [k, n] of Object.entries(ink)) if (n < 50) throw new Error(`tab ${i}: chart series ${k} has only ${n} pixels drawn`);
    }
    for (const [i, s] of stats.entries()) {
      if (!(s.last.rtt > 0)) throw new Error(`tab ${i}: last RTT ${s.last.rtt}`);
      if (!(s.last.dps > 0)) throw new Error(`tab ${i}: last datagrams/s ${s.last.dps}`);
      if (s.players !== 2) throw new Error(`tab ${i}: server reports ${s.players} players, expected 2`);
    }

    // 4. screenshot artifact of the first tab
    await tabs[0].bringToFront();
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await tabs[0].screenshot({ path: args.screenshot, fullPage: true });
    result.screenshot = args.screenshot;
    result.screenshotBytes = fs.statSync(args.screenshot).size;

    // 5. close both sessions with 42/"bye" (the server logs LEAVE ... code=42 reason=bye)
    for (const p of tabs) await p.evaluate(() => window.__demo.close(42, 'bye'));
    for (const p of tabs) await waitFor(p, 'wt.closed never settled after close(42, "bye")', () => window.__demo.closed !== null, null, left());
    result.closed = await Promise.all(tabs.map((p) => p.evaluate(() => window.__demo.closed)));
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = `driver: ${e.message.split('\n')[0]}`;
  } finally {
    if (browser) await browser.close().catch(() => {});
    clearTimeout(deadline);
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main();
