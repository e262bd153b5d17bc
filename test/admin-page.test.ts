// The admin page's routes (src/server/admin/page.ts): the whole daemon
// in-process on loopback (memory backend, real HTTP). What must hold: the
// page and its few files answer GET and HEAD with their own strict CSP,
// nosniff and the right types, no credential needed; nothing else outside
// /api is served (no directory, no path trick reaches a file); the API still
// wants its credential; and the files themselves stay small, offline and
// free of markup built from strings.

import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { parsePolicyText } from '../src/policy/load.js';
import { AdminPage, PAGE_CSP, PAGE_DIR } from '../src/server/admin/page.js';
import { memoryLogger } from './helpers/memory-logger.js';

const nic = (address: string, cidr: string, internal: boolean): NetworkInterfaceInfo =>
  ({ address, cidr, internal, netmask: '', family: 'IPv4', mac: '02:00:00:00:00:01' }) as NetworkInterfaceInfo;
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  lo: [nic('127.0.0.1', '127.0.0.1/8', true)],
  wan0: [nic('198.51.100.1', '198.51.100.1/24', false)],
});

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  s.close();
  return port;
}

let port: number;
let daemon: Daemon;
const STATE = mkdtempSync(join(tmpdir(), 'portcullis-page-'));
const log = memoryLogger();

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

function http(method: string, path: string, headers: Record<string, string> = {}, at = () => port): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: at(), path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.before(async () => {
  port = await freePort();
  const cfg: Config = {
    ...DEFAULTS,
    stateDir: STATE,
    lan: ['lo'],
    wans: ['wan0'],
    backend: 'memory',
    port: await freePort(),
    announce: false,
    upnp: { ...DEFAULTS.upnp, enabled: false },
    admin: { listen: `127.0.0.1:${port}` },
  };
  daemon = await startDaemon(cfg, log, { interfaces, policy: parsePolicyText('version: 1\nrules: []\n', 'test'), neighbours: async () => [] });
});
t.teardown(() => daemon?.stop());

const FILES: [string, RegExp, string][] = [
  ['/', /^text\/html; charset=utf-8$/, 'index.html'],
  ['/app.js', /^text\/javascript; charset=utf-8$/, 'app.js'],
  ['/client.js', /^text\/javascript; charset=utf-8$/, 'client.js'],
  ['/draw.js', /^text\/javascript; charset=utf-8$/, 'draw.js'],
  ['/app.css', /^text\/css; charset=utf-8$/, 'app.css'],
  ['/favicon.svg', /^image\/svg\+xml$/, 'favicon.svg'],
];

t.test('the page and its files: 200 without a credential, the file itself, its type, its own CSP, nosniff, no referrer', async (t) => {
  for (const [path, type, file] of FILES) {
    const r = await http('GET', path);
    t.equal(r.status, 200, `GET ${path}`);
    t.match(r.headers['content-type'], type, `${path}: content type`);
    t.same(r.body, readFileSync(join(PAGE_DIR, file)), `${path} is web/admin/${file}`);
    t.equal(r.headers['content-security-policy'], PAGE_CSP, `${path}: the page's CSP`);
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.equal(r.headers['referrer-policy'], 'no-referrer');
    t.equal(r.headers['x-frame-options'], 'DENY');
    t.equal(r.headers['cache-control'], 'no-cache', 'kept, but asked again each time');
    t.equal(Number(r.headers['content-length']), r.body.length);
  }
  t.equal(PAGE_CSP, "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
});

t.test('HEAD: the headers of GET, no body; a known ETag is a 304', async (t) => {
  const get = await http('GET', '/');
  const head = await http('HEAD', '/');
  t.equal(head.status, 200);
  t.equal(head.body.length, 0, 'no body');
  t.equal(head.headers['content-length'], get.headers['content-length']);
  t.equal(head.headers['content-security-policy'], PAGE_CSP);
  t.match(get.headers.etag, /^"[A-Za-z0-9_-]{22}"$/);
  const again = await http('GET', '/app.js', { 'If-None-Match': (await http('HEAD', '/app.js')).headers.etag as string });
  t.equal(again.status, 304);
  t.equal(again.body.length, 0);
  t.equal((await http('GET', '/app.js', { 'If-None-Match': '"stale"' })).status, 200, 'another ETag: the file');
});

t.test('other methods on the page: 405 with Allow', async (t) => {
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const r = await http(method, '/');
    t.equal(r.status, 405, method);
    t.equal(r.headers.allow, 'GET, HEAD');
  }
});

t.test('nothing but the exact paths: no directory, no other file, no path trick', async (t) => {
  for (const path of ['/index.html', '/web/admin/app.js', '/package.json', '/favicon.ico', '/app', '/APP.JS', '/dist/src/cli.js']) {
    const r = await http('GET', path);
    t.equal(r.status, 404, path);
    t.match(JSON.parse(r.body.toString()), { error: /the admin page is at \// }, `${path}: a JSON error`);
  }
  for (const path of ['/../package.json', '/%2e%2e/', '/%2e%2e/package.json', '/./app.js', '//app.js', '/web/../app.js', '/app.js%00', '/..%2fpackage.json', '/app.js/', '/\\..\\package.json']) {
    const r = await http('GET', path);
    t.equal(r.status, 400, path);
    t.notMatch(r.body.toString(), /"name": "portcullis"/, `${path}: not the file`);
  }
  t.equal((await http('GET', '/?x=1')).status, 200, 'a query string is the same page');
});

t.test('the page needs no credential; the API behind it still does', async (t) => {
  t.equal((await http('GET', '/')).status, 200);
  for (const path of ['/api/devices', '/api/openings', '/api/session']) t.equal((await http('GET', path)).status, 401, path);
  const token = readFileSync(join(STATE, 'admin.token'), 'utf8').trim();
  t.equal((await http('GET', '/api/devices', { Authorization: `Bearer ${token}` })).status, 200, 'with the token: 200');
  t.equal((await http('GET', '/api/openings', { Cookie: 'portcullis_session=' + 'A'.repeat(43) })).status, 401, 'a cookie the daemon never gave');
});

t.test('the files: small enough for a router, nothing from elsewhere, no markup made from strings', async (t) => {
  const files = FILES.map(([, , f]) => [f, readFileSync(join(PAGE_DIR, f), 'utf8')] as const);
  t.same(readdirSync(PAGE_DIR).sort(), files.map(([f]) => f).sort(), 'every file in web/admin/ is served, and nothing else is there');
  const total = files.reduce((n, [, text]) => n + Buffer.byteLength(text), 0);
  t.ok(total < 40 * 1024, `${total} bytes in all (under 40 KiB)`);
  for (const [f, text] of files) {
    t.notMatch(text.replace(/http:\/\/www\.w3\.org\/2000\/svg/g, ''), /https?:\/\//, `${f}: no absolute URL (nothing from a CDN)`);
  }
  for (const [f, js] of files.filter(([f]) => f.endsWith('.js'))) {
    t.notMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/, `${f} builds the DOM with text nodes only`);
    const check = spawnSync(process.execPath, ['--check', join(PAGE_DIR, f)], { encoding: 'utf8' });
    t.equal(check.status, 0, `${f} parses as a module: ${check.stderr}`);
    for (const [, imported] of js.matchAll(/^import .* from '(.*)';$/gm)) t.ok(FILES.some(([path]) => `.${path}` === imported), `${f} imports ${imported}, which is served`);
  }
  const html = files.find(([f]) => f === 'index.html')?.[1] ?? '';
  t.notMatch(html, /<script(?![^>]*\bsrc=)/, 'no inline script (the CSP would refuse it)');
  t.notMatch(html, /\sstyle=|<style/, 'no inline style (the CSP would refuse it)');
  t.match(html, /<script type="module" src="\/app\.js">/);
  t.match(html, /aria-live="polite"/, 'a polite message area');
});

t.test('files missing at start: the daemon still serves the API, the page says what is wrong', async (t) => {
  const page = new AdminPage(join(tmpdir(), 'portcullis-no-such-dir/'));
  t.match(page.missing, /portcullis-no-such-dir\/: cannot read index\.html \(ENOENT\)/);
  const server = createHttpServer((req, res) => {
    if (!page.serve(req, res, req.url ?? '')) {
      res.writeHead(404);
      res.end();
    }
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const at = () => (server.address() as AddressInfo).port;
  const r = await http('GET', '/', {}, at);
  t.equal(r.status, 500);
  t.match(r.body.toString(), /files were not found when the daemon started/);
  t.equal((await http('GET', '/other', {}, at)).status, 404, 'not the page\'s path: left to the server');
  t.notOk(log.lines.some((l) => l.event === 'admin-page-missing'), 'the real daemon found its files');
});
