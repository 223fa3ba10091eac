// wtd interop: Chromium's JavaScript WebTransport against an echo server (datagrams only).
// Result: window.__wtdResult = {ok, mode, draft, ...}; also console.log('WTD_RESULT ' + JSON).

const params = new URLSearchParams(location.search);
const SERVER_URL = params.get('url');
const CERT_HASH = (params.get('hash') || '').trim();
const MODE = params.get('mode') || 'echo';
const SIZES = (params.get('sizes') || '1,16,100,500,1000,max').split(',');
const COUNT = parseInt(params.get('count') || '5', 10);
const SESSIONS = parseInt(params.get('sessions') || '3', 10);
const TIMEOUT_MS = parseInt(params.get('timeout') || '1000', 10);

function log(...a) { console.log('[page]', ...a); }

function hexToBytes(hex) {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`bad cert hash hex: "${hex}"`);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function wtOptions() {
  const opts = {};
  if (CERT_HASH) opts.serverCertificateHashes = [{ algorithm: 'sha-256', value: hexToBytes(CERT_HASH) }];
  return opts;
}

// Distinct, checkable payload: [session byte][4-byte tag][pattern].
function makePayload(sessionByte, tag, size) {
  const p = new Uint8Array(size);
  const head = [sessionByte, (tag >>> 24) & 255, (tag >>> 16) & 255, (tag >>> 8) & 255, tag & 255];
  for (let i = 0; i < size; i++) p[i] = i < head.length ? head[i] : (tag * 7 + i + sessionByte * 13) & 255;
  if (size > 1 && size < head.length) p.set(head.slice(head.length - size + 1), 1); // tiny: marker + low tag bytes
  return p;
}
const key = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');

// A reader wrapper whose pending read survives a timeout.
class DatagramReader {
  constructor(wt) { this.reader = wt.datagrams.readable.getReader(); this.pending = null; }
  async read(ms) {
    if (!this.pending) this.pending = this.reader.read();
    let timer;
    const t = new Promise((res) => { timer = setTimeout(() => res('timeout'), ms); });
    const r = await Promise.race([this.pending, t]);
    clearTimeout(timer);
    if (r === 'timeout') return null;
    this.pending = null;
    if (r.done) throw new Error('datagram readable closed');
    return r.value;
  }
  release() { try { this.reader.releaseLock(); } catch (e) { /* pending read */ } }
}

// Chromium drops incoming datagrams beyond a small default queue; raise every queue knob that exists.
function tuneQueues(wt, res) {
  const d = wt.datagrams;
  const knobs = {};
  for (const k of ['incomingMaxBufferedDatagrams', 'outgoingMaxBufferedDatagrams', 'incomingHighWaterMark', 'outgoingHighWaterMark']) {
    if (k in d) { const before = d[k]; try { d[k] = 1000; } catch (e) { /* read-only */ } knobs[k] = `${before}->${d[k]}`; }
  }
  for (const k of ['incomingMaxAge', 'outgoingMaxAge']) if (k in d) knobs[k] = d[k];
  res.queueKnobs = knobs;
}

// Send COUNT datagrams per size on one session, check every echo byte-for-byte.
async function echoSession(wt, sessionByte, sizes, res) {
  tuneQueues(wt, res);
  const writer = wt.datagrams.writable.getWriter();
  const reader = new DatagramReader(wt);
  let tag = 0;
  res.sent = res.received = res.mismatches = res.resent = 0;
  res.foreign = 0;  // echoes carrying another session's marker byte
  const rtts = [];
  for (const size of sizes) {
    const pending = new Map();  // hex -> {bytes, times: []}
    for (let i = 0; i < COUNT; i++) {
      const p = makePayload(sessionByte, ++tag, size);
      const k = key(p);
      if (!pending.has(k)) pending.set(k, { bytes: p, times: [] });
      pending.get(k).times.push(performance.now());
      await writer.write(p);
      res.sent++;
    }
    let tries = 0;
    while (pending.size) {
      const d = await reader.read(TIMEOUT_MS);
      if (d === null) {
        if (++tries > 3) break;
        for (const e of pending.values()) for (const _ of e.times) {
          await writer.write(e.bytes); res.resent++;
          res.resentSizes = res.resentSizes || {};
          res.resentSizes[size] = (res.resentSizes[size] || 0) + 1;
        }
        continue;
      }
      const k = key(d);
      const e = pending.get(k);
      if (!e) {
        res.mismatches++;
        if (d.length >= 1 && d[0] !== sessionByte) res.foreign++;
        continue;
      }
      rtts.push(performance.now() - e.times.shift());
      if (!e.times.length) pending.delete(k);
      res.received++;
    }
    if (pending.size) { res.missingSizes = [...new Set([...pending.values()].map((e) => e.bytes.length))]; break; }
  }
  rtts.sort((a, b) => a - b);
  res.rttP50Ms = rtts.length ? +rtts[Math.floor(rtts.length / 2)].toFixed(3) : null;
  writer.releaseLock();
  reader.release();
  return res.received === res.sent && res.mismatches === 0 && !res.missingSizes;
}

async function closeSession(wt, res) {
  wt.close({ closeCode: 42, reason: 'bye' });
  const info = await Promise.race([wt.closed, new Promise((r) => setTimeout(() => r('timeout'), 3000))]);
  res.closedInfo = info === 'timeout' ? 'timeout' : { closeCode: info.closeCode, reason: info.reason };
}

function resolveSizes(max) {
  return SIZES.map((s) => (s === 'max' ? max : Math.min(parseInt(s, 10), max)));
}

async function modeEcho() {
  const res = { mode: 'echo' };
  const wt = new WebTransport(SERVER_URL, wtOptions());
  await wt.ready;
  res.maxDatagramSize = wt.datagrams.maxDatagramSize;
  res.sizes = resolveSizes(res.maxDatagramSize);
  res.ok = await echoSession(wt, 0x41, res.sizes, res);
  await closeSession(wt, res);
  return res;
}

async function modeMulti() {
  const res = { mode: 'multi', sessions: [] };
  const wts = [];
  for (let i = 0; i < SESSIONS; i++) wts.push(new WebTransport(SERVER_URL, wtOptions()));
  await Promise.all(wts.map((w) => w.ready));
  const max = wts[0].datagrams.maxDatagramSize;
  const sizes = resolveSizes(max);
  res.maxDatagramSize = max;
  res.sizes = sizes;
  // all sessions send concurrently; each must get exactly its own payloads back
  const per = wts.map((_, i) => ({ session: i, marker: 0x51 + i }));
  const oks = await Promise.all(wts.map((w, i) => echoSession(w, per[i].marker, sizes, per[i])));
  for (let i = 0; i < wts.length; i++) await closeSession(wts[i], per[i]);
  res.sessions = per;
  res.ok = oks.every(Boolean) && per.every((p) => p.foreign === 0);
  return res;
}

async function main() {
  let result;
  const t0 = performance.now();
  try {
    if (typeof WebTransport === 'undefined') throw new Error('WebTransport not available (secure context?)');
    if (!SERVER_URL) throw new Error('missing ?url=');
    result = MODE === 'multi' ? await modeMulti() : await modeEcho();
  } catch (e) {
    result = { ok: false, mode: MODE, error: `${e.name || 'Error'}: ${e.message || e}` };
  }
  result.draft = 'draft-02';  // Chromium 156 default (draft-07 only behind a feature flag)
  result.userAgent = navigator.userAgent;
  result.elapsedMs = Math.round(performance.now() - t0);
  window.__wtdResult = result;
  document.getElementById('out').textContent = JSON.stringify(result, null, 2);
  console.log('WTD_RESULT ' + JSON.stringify(result));
}

main();
