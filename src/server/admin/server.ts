// The admin API over HTTP (--admin ADDR:PORT): JSON under /api, described in
// docs/admin-api.yaml, and the admin page at / (page.ts). Every request is
// hostile until it proves otherwise:
//
// - Arrival: a loopback source, or a LAN source by the daemon's one rule
//   (src/net/lan-source.ts: nothing while the kernel guard is unconfirmed);
//   anyone else's connection is closed unanswered. Connections are slots of
//   a fair pool (src/server/fair-share.ts) per address, device and interface.
// - Size and time: headers MAX_HEADER_BYTES, a body MAX_BODY_BYTES (413
//   beyond, from Content-Length or as it streams), HEADERS_TIMEOUT_MS and
//   REQUEST_TIMEOUT_MS to send them (checked every second, not Node's
//   default 30). An event stream, once asked for, is not cut by them.
// - Host: this router's address, its host name (listen.ts, adminHostNames),
//   localhost or a name in admin.hostNames, else 403 (DNS rebinding).
// - Paths: exact routes only; percent-encoding and `.`/`..`/empty segments
//   are refused (400) before any route is looked at, so no spelling of a
//   path reaches a route it does not name.
// - Who: a bearer token, or a session cookie from POST /api/login
//   (src/server/admin/auth.ts). Failed credentials cost a rate-limit token
//   per source and device (a login takes one first, a success gives it
//   back): 429 beyond.
// - Changes (POST, PUT, PATCH, DELETE): an Origin, if sent, must be this
//   Host; with a session cookie, X-CSRF-Token must be the session's. A body
//   is JSON (Content-Type application/json), which a cross-site form cannot send.

import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../../log.js';
import { parseIp, zoneOf } from '../../net/address.js';
import type { DhcpLeases } from '../../net/dhcp-leases.js';
import type { LocalAddress } from '../../net/interfaces.js';
import type { LanSources } from '../../net/lan-source.js';
import type { Neighbours } from '../../net/neighbours.js';
import { RateLimiter } from '../../net/rate-limit.js';
import type { LoadedPolicy } from '../../policy/load.js';
import type { MappingService } from '../../service/mapping-service.js';
import { FairShare, requesterOf, shareOf } from '../fair-share.js';
import { checkPassword, clearCookie, sameSecret, sessionCookie, Sessions, setCookie, type ScryptHash } from './auth.js';
import { EventHub } from './events.js';
import type { AdminListen } from './listen.js';
import { AdminPage } from './page.js';
import { openingById, picture, pinholeId, type Sources } from './views.js';
import type { StaticOpening } from '../../domain/mapping.js';
import type { StaticEdit } from '../../policy/edit.js';
import { addition, editRefused, removal } from './statics.js';

const MAX_HEADER_BYTES = 8 * 1024;
export const MAX_BODY_BYTES = 4 * 1024;
const MAX_URL_CHARS = 1024;
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_MS = 5_000;
/** Connection slots: a browser opens six or so, plus its event streams. */
const SLOTS = shareOf(64, 12);
/** Login attempts and failed credentials: ten at once, then one every 30 s, per source (and four times that per device). */
export const LOGIN_RATE = { perSecond: 1 / 30, burst: 10 };
/** scrypt checks running at once: each costs 16 MiB and tens of milliseconds. */
const PASSWORD_CHECKS_AT_ONCE = 2;

export interface AdminParts {
  at: AdminListen;
  /** The LAN's addresses now (for which interface a source is on). */
  lan: () => readonly LocalAddress[];
  lanInterfaces: readonly string[];
  sources: LanSources;
  service: MappingService;
  policy: () => LoadedPolicy;
  /** The static openings as installed (device openings resolved to their addresses now). */
  inForce: () => readonly StaticOpening[];
  /** Adds or removes a static opening in the policy file and reloads it (PolicyEditError when it cannot). */
  editStatics: (change: StaticEdit) => Promise<unknown>;
  neighbours: Neighbours;
  /** A counter of the policy keeper's changes (reloads, edits, device openings that moved): live events for them. */
  policyChanges?: () => number;
  /** The daemon's DHCP leases (read by its lease check), for naming devices. */
  leases?: DhcpLeases;
  /** Host names the page is opened at besides addresses and localhost (listen.ts, adminHostNames). */
  hostNames?: readonly string[];
  token: string;
  password?: ScryptHash;
  log: Logger;
}

/**
 * Every route of the API and its methods, spelt as docs/admin-api.yaml
 * spells them: the router finds a request's route here (404 when none, 405
 * with Allow for another method), and a test holds the document to it.
 */
export const ROUTES = {
  '/api/login': ['POST'],
  '/api/session': ['GET'],
  '/api/logout': ['POST'],
  '/api/openings': ['GET'],
  '/api/openings/{id}': ['GET', 'DELETE'],
  '/api/devices': ['GET'],
  '/api/events': ['GET'],
  '/api/statics': ['POST'],
  '/api/statics/{name}': ['DELETE'],
} as const satisfies Record<string, readonly string[]>;
type Route = keyof typeof ROUTES;

/** The route a path names, and its one parameter (an opening's id, a static opening's name). */
function routeOf(path: string): { route: Route; param: string | undefined } | undefined {
  const [, api, head, param, ...rest] = path.split('/');
  if (api !== 'api' || head === undefined || rest.length > 0) return undefined;
  const route = (Object.keys(ROUTES) as Route[]).find((r) => (param === undefined ? r === `/api/${head}` : r.startsWith(`/api/${head}/{`)));
  return route && { route, param };
}

/** An answer the handler gives: a status and a JSON body (or none). */
class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string | string[]> = {},
  ) {}
}
const error = (status: number, message: string, headers: Record<string, string> = {}) => new Reply(status, { error: message }, headers);

/** Who the request is from, once its credentials are checked. */
type Caller = { kind: 'bearer' } | { kind: 'session'; id: string; csrf: string };

export class AdminServer {
  private readonly server: Server;
  private readonly slots = new FairShare(SLOTS);
  private readonly sessions = new Sessions();
  private readonly failures: RateLimiter;
  private readonly events: EventHub;
  /** The admin page's files, read once (src/server/admin/page.ts). */
  private readonly page = new AdminPage();
  private passwordChecks = 0;

  constructor(private readonly p: AdminParts) {
    this.failures = new RateLimiter(LOGIN_RATE.perSecond, LOGIN_RATE.burst, 1024, undefined, p.sources.hostOf);
    // The page shows mappings, static openings and devices: a change to any of them is news.
    this.events = new EventHub(() => p.service.changes() + (p.policyChanges?.() ?? 0) + p.neighbours.version());
    this.server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: KEEP_ALIVE_MS, connectionsCheckingInterval: 1000 }, (req, res) => this.handle(req, res));
    this.server.maxConnections = SLOTS.total;
    this.server.on('connection', (sock: Socket) => this.admit(sock));
    this.server.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => refuseMalformed(err, sock));
  }

  /** Listens; resolves once it does (a port in use rejects). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port: this.p.at.port, host: this.p.at.address, exclusive: true }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.p.log.info({ event: 'admin-listening', address: this.p.at.address, port: this.p.at.port, auth: this.p.password ? 'token or password' : 'token' });
    if (this.page.missing) this.p.log.warn({ event: 'admin-page-missing', error: this.page.missing });
  }

  async stop(): Promise<void> {
    this.events.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** The arrival rule and a fair connection slot, before a byte is read. */
  private admit(sock: Socket): void {
    const peer = sock.remoteAddress ?? '';
    const parsed = parseIp(peer);
    const loopback = parsed !== undefined && (parsed === '::1' || /^127\./.test(parsed));
    const source = loopback ? parsed : this.p.sources.check(peer);
    if (!source) {
      sock.destroy();
      return;
    }
    const release = this.slots.take(requesterOf(source, zoneOf(peer), this.p.lan(), this.p.sources.hostOf));
    if (!release) {
      sock.destroy();
      return;
    }
    sock.once('close', release);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const source = parseIp(req.socket.remoteAddress ?? '') ?? 'unknown';
    this.answer(req, res, source)
      .catch((err: unknown) => {
        this.p.log.error({ event: 'admin-api-failed', method: req.method, error: (err as Error).message });
        return error(500, 'internal error (the daemon log says more)');
      })
      .then((r) => r && this.send(res, r));
  }

  private send(res: ServerResponse, r: Reply): void {
    if (res.headersSent || res.destroyed) return;
    const body = r.body === undefined ? '' : JSON.stringify(r.body);
    res.writeHead(r.status, {
      ...(body ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
      'Referrer-Policy': 'no-referrer',
      ...r.headers,
    });
    res.end(body);
  }

  /** The whole request: undefined when the answer was streamed (events). */
  private async answer(req: IncomingMessage, res: ServerResponse, source: string): Promise<Reply | undefined> {
    if (!this.ourHost(req.headers.host)) {
      return error(403, 'the Host header names neither this router\'s address, its host name nor localhost (a page of another site that renamed itself to this address?): open the admin page at its address, or add the name you use to admin.hostNames in the config', { Connection: 'close' });
    }
    const path = checkPath(req.url ?? '');
    if (typeof path !== 'string') return path;
    const body = await readBody(req);
    if (body instanceof Reply) {
      // The rest of an oversized body is not read: the connection ends with the answer.
      return new Reply(body.status, body.body, { ...body.headers, Connection: 'close' });
    }
    if (!path.startsWith('/api/')) {
      // The page's few exact paths (page.ts); they need no credential, the API they call does.
      if (this.page.serve(req, res, path)) return undefined;
      return error(404, 'not found: the admin page is at /, the admin API under /api (docs/admin-api.yaml)');
    }
    const method = req.method ?? '';
    const at = routeOf(path);
    if (!at) return error(404, `no such resource: ${path.slice(0, 100)} (docs/admin-api.yaml lists them)`);
    const allowed: readonly string[] = ROUTES[at.route];
    if (!allowed.includes(method)) return notAllowed(allowed.join(', '));
    const changes = method !== 'GET' && method !== 'HEAD';
    if (changes) {
      const origin = req.headers.origin;
      if (origin !== undefined && !sameOrigin(origin, req.headers.host)) return error(403, 'cross-origin request refused: the Origin is not this Host');
      if (body.length > 0 && !/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return error(415, 'a request body is JSON: Content-Type: application/json');
    }
    if (at.route === '/api/login') return this.login(body, source);

    const caller = this.authenticate(req, source);
    if (caller instanceof Reply) return caller;
    if (changes && caller.kind === 'session') {
      const csrf = req.headers['x-csrf-token'];
      if (typeof csrf !== 'string' || !sameSecret(csrf, caller.csrf)) return error(403, 'missing or wrong X-CSRF-Token (POST /api/login and GET /api/session give it)');
    }
    return this.route(at.route, at.param, method, caller, source, req, res, body);
  }

  private async route(route: Exclude<Route, '/api/login'>, param: string | undefined, method: string, caller: Caller, source: string, req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<Reply | undefined> {
    switch (route) {
      case '/api/session':
        return new Reply(200, caller.kind === 'session' ? { auth: 'session', csrf: caller.csrf } : { auth: 'bearer' });
      case '/api/logout':
        if (caller.kind === 'session') this.sessions.close(caller.id);
        return new Reply(204, undefined, { 'Set-Cookie': clearCookie() });
      case '/api/openings': {
        const pic = await picture(await this.sources(), true);
        return new Reply(200, { openings: pic.openings, truncated: pic.truncated });
      }
      case '/api/openings/{id}':
        return this.opening(method, param as string, source);
      case '/api/devices': {
        const pic = await picture(await this.sources(), false);
        return new Reply(200, { devices: pic.devices, truncated: pic.truncated });
      }
      case '/api/events': {
        const valid = caller.kind === 'session' ? () => this.sessions.get(caller.id) !== undefined : () => true;
        const r = this.events.subscribe(res, source, valid);
        req.socket.setTimeout(0);
        return r.ok ? undefined : error(429, r.error);
      }
      case '/api/statics':
      case '/api/statics/{name}':
        return this.statics(param, body, source);
    }
  }

  /** POST /api/statics (a device opening, 201 with it as listed) and DELETE /api/statics/{name} (any static opening, 204). */
  private async statics(name: string | undefined, body: Buffer, source: string): Promise<Reply> {
    const change = name === undefined ? addition(body, (n) => this.p.policy().statics.some((s) => s.name === n), this.p.leases) : removal(name);
    if ('status' in change) return new Reply(change.status, change.body);
    try {
      await this.p.editStatics(change);
    } catch (err) {
      const r = editRefused(err);
      return new Reply(r.status, r.body);
    }
    this.p.log.info({ event: 'admin-api', op: change.op === 'add' ? 'add-static' : 'remove-static', name: change.op === 'add' ? change.entry.name : change.name, source });
    if (change.op === 'remove') return new Reply(204, undefined);
    const added = await openingById(await this.sources(), pinholeId(change.entry.name));
    return new Reply(201, { openings: added ? [added] : [] });
  }

  /** GET or DELETE /api/openings/{id}. */
  private async opening(method: string, id: string, source: string): Promise<Reply> {
    if (!/^\d{1,15}$/.test(id) && !/^static-[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(id)) {
      return error(400, 'an opening id is a whole number (a mapping) or static-NAME (a static pinhole), as GET /api/openings lists them');
    }
    const s = await this.sources();
    const found = await openingById(s, id);
    if (!found) return error(404, `no opening ${id} (it may have expired or been removed)`);
    if (method === 'GET') return new Reply(200, found);
    if (found.origin === 'static') {
      return error(409, `opening ${id} is the static opening '${found.name ?? ''}' of the policy file: remove it with DELETE /api/statics/${found.name ?? ''}`);
    }
    const n = Number(id);
    const r = await this.p.service.removeAsAdmin((m) => m.id === n);
    if (!r.ok) return error(502, 'the firewall refused the change: nothing was removed (the daemon log says why)');
    if (r.removed.length === 0) return error(404, `no opening ${id} (it ended meanwhile)`);
    this.p.log.info({ event: 'admin-api', op: 'remove', id: n, source });
    return new Reply(200, { removed: found });
  }

  private async login(body: Buffer, source: string): Promise<Reply> {
    // Every attempt takes a token before any secret is looked at (so guesses
    // checked at once cannot run past the limit), and a success gives it
    // back: a guesser gets ten tries, then one every 30 s; the admin who
    // logs in right is never the one held up.
    if (!this.failures.take(source)) return tooMany();
    let asked: unknown;
    try {
      asked = JSON.parse(body.toString('utf8'));
    } catch {
      return error(400, 'the body is not JSON: send {"token": "…"} or {"password": "…"}');
    }
    const shape = 'send {"token": "…"} or {"password": "…"} (one of them, a string)';
    if (typeof asked !== 'object' || asked === null || Array.isArray(asked)) return error(400, shape);
    // The schema (docs/admin-api.yaml) allows no other field: a misspelt one is said, not ignored.
    const extra = Object.keys(asked).find((k) => k !== 'token' && k !== 'password');
    if (extra !== undefined) return error(400, `unknown field ${JSON.stringify(extra.slice(0, 40))}: ${shape}`);
    const { token, password } = asked as { token?: unknown; password?: unknown };
    let ok: boolean;
    let via: 'token' | 'password';
    if (typeof token === 'string' && password === undefined) {
      via = 'token';
      ok = sameSecret(token, this.p.token);
    } else if (typeof password === 'string' && token === undefined) {
      via = 'password';
      if (!this.p.password) return error(400, 'no password is configured (admin.passwordHash): log in with the token in STATE/admin.token');
      if (this.passwordChecks >= PASSWORD_CHECKS_AT_ONCE) return error(503, 'busy checking other logins: try again in a moment', { 'Retry-After': '1' });
      this.passwordChecks++;
      try {
        ok = await checkPassword(password, this.p.password);
      } finally {
        this.passwordChecks--;
      }
    } else {
      return error(400, shape);
    }
    if (!ok) {
      this.p.log.warn({ event: 'admin-login-failed', source, via });
      return error(401, `wrong ${via}`);
    }
    this.failures.giveBack(source);
    const s = this.sessions.open();
    this.p.log.info({ event: 'admin-login', source, via });
    return new Reply(200, { csrf: s.csrf, expiresInSeconds: s.maxAgeSeconds }, { 'Set-Cookie': setCookie(s.id, s.maxAgeSeconds) });
  }

  /**
   * The Host names this router: the listen address, one of the LAN's
   * addresses, or localhost (any port: an SSH tunnel may choose its own). A
   * DNS-rebinding page's requests carry its own name and are refused, so a
   * site that pointed its name at this address reads and changes nothing.
   */
  private ourHost(host: string | undefined): boolean {
    if (host === undefined) return false;
    let name: string;
    try {
      name = new URL(`http://${host}`).hostname.replace(/^\[(.*)\]$/, '$1');
    } catch {
      return false;
    }
    if (name === 'localhost' || this.p.hostNames?.includes(name.toLowerCase().replace(/\.$/, ''))) return true;
    const address = parseIp(name);
    return address !== undefined && (address === parseIp(this.p.at.address) || this.p.lan().some((l) => l.address === address));
  }

  /** A bearer token (checked, failures rate-limited) or a live session cookie. */
  private authenticate(req: IncomingMessage, source: string): Caller | Reply {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer ([\x21-\x7e]{1,256})$/.exec(auth);
      if (m && sameSecret(m[1] as string, this.p.token)) return { kind: 'bearer' };
      this.p.log.warn({ event: 'admin-login-failed', source, via: 'bearer' });
      if (!this.failures.take(source)) return tooMany();
      return error(401, 'wrong bearer token', { 'WWW-Authenticate': 'Bearer' });
    }
    const id = sessionCookie(req.headers.cookie);
    const s = id !== undefined ? this.sessions.get(id) : undefined;
    if (!s || id === undefined) return error(401, 'not logged in: POST /api/login, or send Authorization: Bearer TOKEN (STATE/admin.token)', { 'WWW-Authenticate': 'Bearer' });
    return { kind: 'session', id, csrf: s.csrf };
  }

  /** What a listing is built from, read now (the neighbour table is throttled by its owner; the leases are the daemon's lease check's). */
  private async sources(): Promise<Sources> {
    await this.p.neighbours.refresh();
    const lan = new Set(this.p.lanInterfaces);
    return {
      service: this.p.service,
      statics: this.p.policy().statics,
      inForce: this.p.inForce(),
      neighbours: this.p.neighbours.entries().filter((n) => lan.has(n.interface)),
      leases: this.p.leases,
      now: Date.now(),
    };
  }
}

/** How long a refused connection may take to read its answer before it is cut. */
const LINGER_MS = 2_000;

/**
 * What Node's parser refused (headers too large, a malformed request, headers
 * too slow) answered as the API answers: a JSON error, then the connection
 * closed, cut after LINGER_MS whatever the reader does.
 */
function refuseMalformed(err: NodeJS.ErrnoException, sock: Socket): void {
  if (err.code === 'ECONNRESET' || !sock.writable) {
    sock.destroy();
    return;
  }
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW' ? [431, `the request's headers are larger than ${MAX_HEADER_BYTES} bytes`]
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'the request did not arrive in time']
    : [400, 'not a well-formed HTTP/1.1 request'];
  const body = JSON.stringify({ error: message });
  sock.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
  );
  setTimeout(() => sock.destroy(), LINGER_MS).unref();
}

const notAllowed = (allow: string) => error(405, `method not allowed here; allowed: ${allow}`, { Allow: allow });
const tooMany = () => error(429, 'too many failed logins from this address: wait and try again', { 'Retry-After': String(Math.ceil(1 / LOGIN_RATE.perSecond)) });

/** The path, or a 400: exact, plain segments only. */
function checkPath(url: string): string | Reply {
  if (url.length > MAX_URL_CHARS) return error(414, `the URL is longer than ${MAX_URL_CHARS} characters`);
  const path = url.split('?')[0] as string;
  if (!path.startsWith('/')) return error(400, 'the request target is not a path');
  if (path.includes('%') || path.includes('\\')) return error(400, 'percent-encoding and backslashes are not used in this API\'s paths');
  const segments = path.split('/').slice(1);
  if (path !== '/' && segments.some((s) => s === '' || s === '.' || s === '..')) return error(400, 'empty, . and .. path segments are refused');
  if (!/^[A-Za-z0-9/_.-]*$/.test(path)) return error(400, 'a path holds letters, digits, / _ . - only');
  return path;
}

/** The body, at most MAX_BODY_BYTES, or a 413 (the rest is left unread: the answer closes the connection). */
function readBody(req: IncomingMessage): Promise<Buffer | Reply> {
  const tooLarge = () => error(413, `a request body is at most ${MAX_BODY_BYTES} bytes`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && !(Number(declared) <= MAX_BODY_BYTES)) return Promise.resolve(tooLarge());
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer) => {
      length += chunk.length;
      if (length <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.pause();
      resolve(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', () => resolve(error(400, 'the request body could not be read')));
  });
}

/** The Origin names the host the request was sent to (scheme aside: the page is served over one). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}
