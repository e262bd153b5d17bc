// Talking to the admin API (docs/admin-api.yaml): JSON both ways, the
// session's CSRF token on every change, every request bounded in time, and
// every failure one ApiError carrying what the daemon said ({"error": …}).

const REQUEST_TIMEOUT_MS = 10_000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The CSRF token of this page's session; null while logged out. */
let csrf = null;

export const loggedIn = () => csrf !== null;

/** Login and GET /api/session give the token (a bearer caller has none: ''). */
export function setSession(token) {
  csrf = token;
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new ApiError(0, `the router did not answer (${err.name === 'TimeoutError' ? `nothing in ${REQUEST_TIMEOUT_MS / 1000} s` : err.message})`);
  }
  const text = await res.text().catch(() => '');
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`);
  return data;
}
