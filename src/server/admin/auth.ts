// Who may use the admin API, and how they prove it.
//
// - The token: 32 random bytes (64 hex digits) in STATE/admin.token, made
//   at the first start with mode 0600 and never logged. It is the API's
//   bearer token (`Authorization: Bearer TOKEN`), and the page logs in with it.
// - A password instead, when the config holds its hash (`admin.passwordHash`):
//   `scrypt$N$r$p$SALT$HASH` (SALT and HASH base64), made by `hashPassword`.
// - A login gets a session: a random id in an HttpOnly, SameSite=Strict
//   cookie and a CSRF token the page sends back as X-CSRF-Token on every
//   change. Sessions live in memory only (a restart logs everyone out),
//   MAX_SESSIONS at most (the oldest goes first), SESSION_TTL_MS each.
//
// Secrets are compared in constant time: both sides are hashed first, so
// neither their content nor their length shows in the time taken. The table
// is keyed by the hash of a session id for the same reason.

import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../config.js';

export const TOKEN_FILE = 'admin.token';
export const SESSION_COOKIE = 'portcullis_session';
export const SESSION_TTL_MS = 12 * 3600 * 1000;
export const MAX_SESSIONS = 64;

const TOKEN = /^[0-9a-f]{64}$/;
const HASH_FORMAT = /^scrypt\$(\d{1,7})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/]{16,88}={0,2})\$([A-Za-z0-9+/]{43,88}={0,2})$/;
/** scrypt's memory is 128·N·r bytes: 16384·8 is 16 MiB, about 50 ms on a small router. */
const DEFAULT_SCRYPT = { N: 16384, r: 8, p: 1 };
/** A hash in the config asks no more than 64 MiB of memory (N·r ≤ 2^19) per check. */
const MAX_SCRYPT_NR = 1 << 19;

/** Equal, in time that depends on neither side. */
export function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

/**
 * STATE/admin.token: read, or made (0600, exclusively) when absent. A file
 * others may read is tightened to 0600; one that holds no token is an error
 * that says how to get a new one.
 */
export function adminToken(stateDir: string): string {
  const file = join(stateDir, TOKEN_FILE);
  const token = randomBytes(32).toString('hex');
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`${file}: cannot create: ${(err as Error).message}`);
    return readToken(file);
  }
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  return token;
}

function readToken(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > 256) throw new ConfigError(`${file} is not a token file (remove it and a new token is made at the next start)`);
    if ((st.mode & 0o077) !== 0) chmodSync(file, 0o600);
    const token = readFileSync(fd, 'utf8').trim();
    if (!TOKEN.test(token)) throw new ConfigError(`${file} does not hold a token (64 hex digits); remove it and a new one is made at the next start`);
    return token;
  } finally {
    closeSync(fd);
  }
}

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** `admin.passwordHash` checked at start: the format, and a cost this router can pay. */
export function parsePasswordHash(text: string): ScryptHash {
  const m = HASH_FORMAT.exec(text);
  const bad = (why: string) => new ConfigError(`admin.passwordHash: ${why}; expected scrypt$N$r$p$SALT$HASH as 'portcullis admin-password' prints it`);
  if (!m) throw bad('not in the expected format');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1 || p > 4 || N * r > MAX_SCRYPT_NR) throw bad(`N=${N} r=${r} p=${p} are not usable (N a power of two, N·r at most ${MAX_SCRYPT_NR}, p 1 to 4)`);
  const hash = Buffer.from(m[5] as string, 'base64');
  if (hash.length < 32) throw bad('the hash is shorter than 32 bytes');
  return { N, r, p, salt: Buffer.from(m[4] as string, 'base64'), hash };
}

function scryptOf(password: string, h: Pick<ScryptHash, 'N' | 'r' | 'p' | 'salt'>, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, h.salt, length, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The `admin.passwordHash` of a password (what `portcullis admin-password` prints). */
export async function hashPassword(password: string, cost = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptOf(password, { ...cost, salt }, 32);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function checkPassword(password: string, h: ScryptHash): Promise<boolean> {
  const key = await scryptOf(password, h, h.hash.length);
  return timingSafeEqual(key, h.hash);
}

export interface Session {
  readonly csrf: string;
  readonly expiresAt: number;
}

/** The logged-in sessions, in memory, bounded. */
export class Sessions {
  private readonly byHash = new Map<string, Session>();

  constructor(
    private readonly now: () => number = () => Date.now(),
    private readonly max = MAX_SESSIONS,
    private readonly ttlMs = SESSION_TTL_MS,
  ) {}

  get size(): number {
    return this.byHash.size;
  }

  /** A new session: its cookie value (the id) and its CSRF token. */
  open(): { id: string; csrf: string; maxAgeSeconds: number } {
    this.sweep();
    // Map order is insertion order: the first key is the oldest session.
    while (this.byHash.size >= this.max) this.byHash.delete(this.byHash.keys().next().value as string);
    const id = randomBytes(32).toString('base64url');
    const csrf = randomBytes(32).toString('base64url');
    this.byHash.set(idHash(id), { csrf, expiresAt: this.now() + this.ttlMs });
    return { id, csrf, maxAgeSeconds: Math.floor(this.ttlMs / 1000) };
  }

  /** The session a cookie names, if it is live. */
  get(id: string): Session | undefined {
    const key = idHash(id);
    const s = this.byHash.get(key);
    if (s && s.expiresAt <= this.now()) {
      this.byHash.delete(key);
      return undefined;
    }
    return s;
  }

  close(id: string): void {
    this.byHash.delete(idHash(id));
  }

  private sweep(): void {
    const t = this.now();
    for (const [k, s] of this.byHash) if (s.expiresAt <= t) this.byHash.delete(k);
  }
}

function idHash(id: string): string {
  return createHash('sha256').update(id).digest('base64');
}

/** The session cookie's value from a Cookie header, if there is one that looks like ours. */
export function sessionCookie(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 4096) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    const value = part.slice(eq + 1).trim();
    return /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
  }
  return undefined;
}

export function setCookie(id: string, maxAgeSeconds: number): string {
  // No Secure: the page is plain HTTP on the LAN (no certificate a router could present).
  return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}`;
}

export function clearCookie(): string {
  return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
}
