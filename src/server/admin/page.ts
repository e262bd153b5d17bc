// The admin page (issue 13): the files in web/admin/, served by the admin
// server at a handful of exact paths. There is no directory serving: a path
// is one of PAGE_FILES or it is not the page's, and the server's path rules
// (no percent-encoding, no `.`/`..`/empty segments) have run before this.
//
// The files are read once, when the server is made, from the installed
// package (web/ ships beside dist/): a request never touches the disk, and a
// router's flash is not read per visit. They are small (tens of KiB).
//
// The page needs no credential: it holds no data, it asks /api for it,
// which does. Its own Content-Security-Policy allows only this origin's
// script, style and fetches, so a description or a lease name that slipped
// into the markup could still not run.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/** web/admin/ of the package this file was installed with (dist/src/server/admin/ → the package root). */
export const PAGE_DIR = fileURLToPath(new URL('../../../../web/admin/', import.meta.url));

/** The page's paths, each with its file and type. */
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/client.js': { file: 'client.js', type: 'text/javascript; charset=utf-8' },
  '/draw.js': { file: 'draw.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HEADERS = {
  'Content-Security-Policy': PAGE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  // The names do not change with a release, so a browser keeps a copy but asks
  // each time whether it is still current (the ETag makes that a 304).
  'Cache-Control': 'no-cache',
};

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

export class AdminPage {
  private readonly files = new Map<string, File>();
  /** Why the page cannot be served (its files were not readable at start), or undefined. */
  readonly missing: string | undefined;

  constructor(dir = PAGE_DIR) {
    const unread: string[] = [];
    for (const [path, f] of Object.entries(PAGE_FILES)) {
      try {
        const body = readFileSync(`${dir}${f.file}`);
        this.files.set(path, { body, type: f.type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
      } catch (err) {
        unread.push(`${f.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
    this.missing = unread.length > 0 ? `${dir}: cannot read ${unread.join(', ')}` : undefined;
  }

  /** True when `path` is one of the page's: the answer is written. False: not the page's, nothing written. */
  serve(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (!Object.hasOwn(PAGE_FILES, path)) return false;
    const method = req.method ?? '';
    if (method !== 'GET' && method !== 'HEAD') {
      text(res, 405, 'method not allowed: the page is read with GET or HEAD\n', { Allow: 'GET, HEAD' });
      return true;
    }
    const f = this.files.get(path);
    if (!f) {
      // Logged at start (server.ts); the admin can still use the API.
      text(res, 500, 'the admin page\'s files were not found when the daemon started (the daemon log says which); reinstall portcullis\n');
      return true;
    }
    if (req.headers['if-none-match'] === f.etag) {
      res.writeHead(304, { ...HEADERS, ETag: f.etag });
      res.end();
      return true;
    }
    res.writeHead(200, { ...HEADERS, 'Content-Type': f.type, 'Content-Length': String(f.body.length), ETag: f.etag });
    res.end(method === 'HEAD' ? undefined : f.body);
    return true;
  }
}

function text(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
