#!/usr/bin/env node
// A small but complete ops-repl console client, written from PROTOCOL.md alone:
// documentation by example for authors of other clients.
//
//   OPS_REPL_TOKEN=… node client.mjs [--out DIR] [--complete TEXT]
//                                    [--cancel-after SECONDS] URL LINE...
//
// Runs each LINE as a `run` request, in order, stopping at the first failure.
// When the server answers `incomplete` (unfinished Go), the next LINE is
// appended to the same source, so `'func f() int {' 'return 1 }' 'f()'` works.
// --complete TEXT first asks for completions of TEXT and prints them.
// --cancel-after SECONDS cancels a run still going after that long.
// --out DIR saves downloaded files (heapdump, profile, trace) in DIR, after
// checking their size and SHA-256; without it they are checked, not kept.
//
// The token is read from the environment only: never from argv (other local
// users can read the process list) nor from the URL (the server refuses any
// query string, and URLs end up in logs and shell histories).
//
// Exit codes: 0 every request succeeded, 1 a request ended in error,
// 2 usage, 3 handshake refused (401, 403, 429), 4 connection or protocol error.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const PROTOCOL = 'ops-repl.v1';
const FINAL = new Set(['result', 'error', 'incomplete', 'completions']);

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { out: { type: 'string' }, complete: { type: 'string' }, 'cancel-after': { type: 'string' } },
});
const [url, ...lines] = positionals;
const token = process.env.OPS_REPL_TOKEN;
if (!url || !token || (lines.length === 0 && opts.complete === undefined)) {
  console.error('usage: OPS_REPL_TOKEN=TOKEN node client.mjs [--out DIR] [--complete TEXT] [--cancel-after SECONDS] URL LINE...');
  process.exit(2);
}

function die(code, message) {
  console.error(message);
  process.exit(code);
}

const ws = new WebSocket(url, PROTOCOL, {
  headers: { Authorization: `Bearer ${token}` },
  handshakeTimeout: 30_000,
});

// Refusals come before the upgrade, as plain HTTP with a body "CODE: message".
ws.on('unexpected-response', (req, res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (s) => { body += s; });
  res.on('end', () => {
    const retry = res.headers['retry-after'] ? ` (retry after ${res.headers['retry-after']} s)` : '';
    die([401, 403, 429].includes(res.statusCode) ? 3 : 4, `refused: HTTP ${res.statusCode}: ${body.trim()}${retry}`);
  });
});
ws.on('error', (err) => die(4, `connection: ${err.message}`));
ws.on('open', () => {
  if (ws.protocol !== PROTOCOL) die(4, `protocol: server selected subprotocol "${ws.protocol}"`);
});
let closing = false;
ws.on('close', (code, reason) => {
  if (!closing) die(4, `connection closed: ${code} ${reason}`);
});

// Events are dispatched to the one request in flight: this client sends a
// request only after the previous one's final event. (`cancel` has no reply.)
let hello;
let onHello;
let failed = false;
// clean shows control characters (other than newline and tab) as \u escapes:
// text from the server must not drive the terminal (colours, titles, clears).
const clean = (s) => String(s).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g,
  (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));

let current = null; // { id, resolve }
let file = null;    // the open file transfer, if any

ws.on('message', (data, isBinary) => {
  if (isBinary) return onChunk(data);
  let ev;
  try { ev = JSON.parse(data.toString('utf8')); } catch { die(4, 'protocol: an event that is not JSON'); }
  if (!hello) {
    if (ev.type !== 'hello' || ev.server !== PROTOCOL) die(4, `protocol: expected hello, got ${data}`);
    hello = ev;
    return onHello();
  }
  if (!ev.id) {
    // Id 0 answers no request: a notice (your credentials were revoked, say),
    // or an error for a frame the server could not read or that reused an
    // id in flight. Show it; what ends a request is its own final event.
    console.error(`${ev.type === 'error' ? `error ${ev.code}` : ev.type}: ${clean(ev.message ?? '')}`);
    return;
  }
  if (!current || ev.id !== current.id) die(4, `protocol: an event for request ${ev.id}, not in flight`);
  switch (ev.type) {
    case 'output': process.stdout.write(clean(ev.data ?? '')); break;
    case 'notice': console.error(`notice: ${clean(ev.message ?? '')}`); break;
    case 'file': onFile(ev); break;
    case 'file_end': onFileEnd(ev); break;
    case 'result': if (ev.value) console.log(clean(ev.value)); break;
    case 'error':
      file = null; // discard a partial transfer
      console.error(`error ${ev.code}: ${clean(ev.message ?? '')}`);
      break;
    default: break; // incomplete, completions, and types this client does not know
  }
  if (FINAL.has(ev.type)) {
    const { resolve } = current;
    current = null;
    resolve(ev);
  }
});

function onFile(ev) {
  if (file) die(4, 'protocol: a file transfer while another is open');
  file = { name: ev.name ?? '', size: ev.size ?? 0, sha256: ev.sha256 ?? '', got: 0,
    hash: createHash('sha256'), chunks: [] };
}

function onChunk(chunk) {
  if (!file) die(4, 'protocol: a binary frame outside a file transfer');
  file.got += chunk.length;
  file.hash.update(chunk);
  if (opts.out !== undefined) file.chunks.push(chunk); // small files: kept in memory
}

function onFileEnd(ev) {
  if (!file || ev.name !== file.name) die(4, 'protocol: file_end without its file');
  const { name, size, sha256, got } = file;
  const sum = file.hash.digest('hex');
  if (got !== size || sum !== sha256) {
    die(4, `protocol: file ${name}: received ${got} bytes, sha256 ${sum}; announced ${size} bytes, sha256 ${sha256}`);
  }
  console.log(`file ${name} ${size} bytes sha256 ${sum} verified`);
  if (opts.out !== undefined) {
    // The name is only a suggestion: keep it a plain file name, never a path.
    const path = join(opts.out, name.replace(/[^\w.-]/g, '_').replace(/^\.*/, '') || 'download');
    try {
      writeFileSync(path, Buffer.concat(file.chunks), { mode: 0o600, flag: 'wx' });
      console.log(`saved ${path}`);
    } catch (err) {
      console.error(`cannot save ${name}: ${err.message}`); // never overwrite
      failed = true;
    }
  }
  file = null;
}

let lastId = 0;
function request(frame) {
  return new Promise((resolve) => {
    current = { id: frame.id, resolve };
    ws.send(JSON.stringify(frame));
  });
}

async function run(line) {
  const id = ++lastId;
  const seconds = Number(opts['cancel-after'] ?? 0);
  const timer = seconds > 0 && setTimeout(() => {
    ws.send(JSON.stringify({ type: 'cancel', id: ++lastId, target: id }));
  }, seconds * 1000);
  const ev = await request({ type: 'run', id, line });
  clearTimeout(timer);
  return ev;
}

await new Promise((resolve) => { onHello = resolve; });
console.error(clean(`connected: subject ${hello.subject}, roles ${(hello.roles ?? []).join(' ')}, session ${hello.session}`));

if (opts.complete !== undefined) {
  const text = opts.complete;
  const ev = await request({ type: 'complete', id: ++lastId, line: text }); // pos: the end
  if (ev.type !== 'completions') failed = true;
  // Each item replaces text[start:pos]; start and pos are byte offsets.
  const head = Buffer.from(text, 'utf8').subarray(0, ev.start ?? 0).toString('utf8');
  for (const item of ev.items ?? []) console.log(`completion: ${head}${item}`);
}

let source = '';
for (const line of lines) {
  if (failed) break;
  source = source === '' ? line : `${source}\n${line}`;
  const ev = await run(source);
  if (ev.type === 'incomplete') continue; // keep the source, append the next line
  source = '';
  if (ev.type !== 'result') failed = true;
}
if (!failed && source !== '') {
  console.error('error: the Go source is unfinished (the server answered incomplete)');
  failed = true;
}

closing = true;
process.exitCode = failed ? 1 : 0;
ws.close(1000); // a normal close; the process ends once the server answers it
