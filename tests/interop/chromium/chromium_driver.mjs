#!/usr/bin/env node
// Drive Debian's /usr/bin/chromium (via npm playwright-core; never downloads a browser) to run the
// WebTransport page in this directory against a server, print the page's result object as one JSON
// line, exit 0 if result.ok else 1.
//
// The page is served by a tiny built-in static server on http://localhost:<free port>/ (a secure
// context) with COOP/COEP headers (5 us performance.now() resolution).

import { createRequire } from 'node:module';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');

const USAGE = `usage: node chromium_driver.mjs --url https://127.0.0.1:PORT/path --hash <sha256 hex of DER cert>
                 [--mode echo|multi] [--sizes 1,16,100,500,1000,max] [--count 5] [--sessions 3]
                 [--timeout 30] [--chromium /usr/bin/chromium] [--cache DIR] [--verbose]
  echo   one session: datagrams of each size (max = wt.datagrams.maxDatagramSize), every echo checked
         byte-for-byte, then wt.close({closeCode: 42, reason: "bye"})
  multi  --sessions WebTransport sessions to the same server at once (Chromium may pool them on one
         connection); each sends distinct payloads and must get only its own back; each closed 42/"bye"
  playwright-core is loaded from $WTD_INTEROP_CACHE/node (default <repo>/build/interop-cache/node).`;

function parseArgs(argv) {
  const a = { mode: 'echo', timeout: 30, chromium: '/usr/bin/chromium', verbose: false,
              cache: process.env.WTD_INTEROP_CACHE || path.join(REPO, 'build', 'interop-cache') };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    switch (k) {
      case '-h': case '--help': console.log(USAGE); process.exit(0);
      case '--url': a.url = v(); break;
      case '--hash': a.hash = v(); break;
      case '--mode': a.mode = v(); break;
      case '--sizes': a.sizes = v(); break;
      case '--count': a.count = v(); break;
      case '--sessions': a.sessions = v(); break;
      case '--timeout': a.timeout = parseFloat(v()); break;
      case '--chromium': a.chromium = v(); break;
      case '--cache': a.cache = v(); break;
      case '--verbose': a.verbose = true; break;
      default: console.error(`unknown argument ${k}\n${USAGE}`); process.exit(2);
    }
  }
  if (!a.url || !a.hash) { console.error(USAGE); process.exit(2); }
  return a;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

function startStaticServer() {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://localhost');
    const name = u.pathname === '/' ? 'index.html' : path.basename(u.pathname);
    const file = path.join(HERE, name);
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    };
    if (!TYPES[path.extname(file)] || !fs.existsSync(file)) { res.writeHead(404, headers); res.end(); return; }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const require = createRequire(path.join(args.cache, 'node', 'package.json'));
  const { chromium } = require('playwright-core');

  const server = await startStaticServer();
  const pagePort = server.address().port;
  const q = new URLSearchParams({ url: args.url, hash: args.hash, mode: args.mode });
  for (const k of ['sizes', 'count', 'sessions']) if (args[k]) q.set(k, args[k]);
  const pageUrl = `http://localhost:${pagePort}/?${q}`;

  let browser;
  let result;
  const deadline = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, mode: args.mode, error: `driver timeout ${args.timeout}s` }));
    process.exit(1);
  }, args.timeout * 1000 + 5000);
  try {
    browser = await chromium.launch({
      executablePath: args.chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    page.on('console', (m) => { if (args.verbose || m.type() === 'error') console.error(`[console.${m.type()}] ${m.text()}`); });
    page.on('pageerror', (e) => console.error(`[pageerror] ${e.message}`));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.__wtdResult !== undefined, null, { timeout: args.timeout * 1000 });
    result = await page.evaluate(() => window.__wtdResult);
    result.browserVersion = browser.version();
  } catch (e) {
    result = { ok: false, mode: args.mode, error: `driver: ${e.message.split('\n')[0]}` };
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.close();
    clearTimeout(deadline);
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main();
