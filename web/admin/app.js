// The admin page: log in, draw every device of the LAN with what the internet
// reaches on it (draw.js), keep the picture live, and do what its buttons
// and forms ask through the admin API (client.js, docs/admin-api.yaml).
//
// Live: /api/events says "something changed"; the page asks again at most
// every REFRESH_DEBOUNCE_MS, and every FALLBACK_REFRESH_MS anyway (packet
// counts raise no event). A stream the daemon refused
// (401, 429) is tried again with a growing pause, never more than
// RECONNECT_MAX_MS; one that merely dropped, EventSource resumes itself.

import { api, ApiError, loggedIn, setSession } from './client.js';
import { describe, deviceName, Picture, staticName } from './draw.js';

const REFRESH_DEBOUNCE_MS = 250;
const FALLBACK_REFRESH_MS = 30_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;

const $ = (id) => document.getElementById(id);
const ui = {
  login: $('login'), loginForm: $('login-form'), secret: $('secret'),
  app: $('app'), message: $('message'), live: $('live'), logout: $('logout'),
};

const picture = new Picture({ devices: $('devices'), summary: $('summary'), heading: $('app-title') }, { close: closeOpening, open: openPort });

/** The message area (a polite live region): what happened, or what went wrong. */
function say(text, kind = 'ok') {
  ui.message.className = `message ${kind}`;
  ui.message.textContent = text;
}

/** An API failure, said; a lost session goes back to the login. */
function failed(what, err) {
  if (err instanceof ApiError && err.status === 401 && loggedIn()) return showLogin('Your session has ended: log in again.', 'error');
  say(`${what}: ${err.message}`, 'error');
}

// ---- logging in and out --------------------------------------------------

ui.loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const secret = ui.secret.value.trim();
  if (!secret) return;
  // The token is 64 hex digits; anything else is taken for the password.
  const body = /^[0-9a-f]{64}$/i.test(secret) ? { token: secret.toLowerCase() } : { password: secret };
  const button = ui.loginForm.querySelector('button');
  button.disabled = true;
  try {
    const r = await api('POST', '/api/login', body);
    ui.secret.value = '';
    say('Logged in.');
    showApp(r.csrf);
  } catch (err) {
    say(`Log in failed: ${err.message}`, 'error');
    ui.secret.select();
  } finally {
    button.disabled = false;
  }
});

ui.logout.addEventListener('click', async () => {
  try {
    await api('POST', '/api/logout');
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) return failed('Log out', err);
  }
  showLogin('Logged out.', 'ok');
});

function showApp(csrf) {
  setSession(csrf);
  ui.login.hidden = true;
  ui.app.hidden = false;
  ui.logout.hidden = false;
  listen();
  load();
}

function showLogin(message, kind) {
  setSession(null);
  stopListening();
  picture.clear();
  ui.app.hidden = true;
  ui.logout.hidden = true;
  ui.login.hidden = false;
  say(message, kind);
  ui.secret.focus();
}

// ---- live: the event stream ------------------------------------------------

let stream = null;
let reconnectTimer = 0;
let reconnectMs = RECONNECT_MIN_MS;
let fallbackTimer = 0;
let refreshTimer = 0;

function setLive(text, ok) {
  ui.live.hidden = false;
  ui.live.textContent = text;
  ui.live.className = ok ? 'live on' : 'live off';
}

function listen() {
  stopListening();
  const es = new EventSource('/api/events');
  stream = es;
  es.addEventListener('hello', () => {
    reconnectMs = RECONNECT_MIN_MS;
    setLive('live', true);
    // Whatever changed while the stream was down.
    refreshSoon();
  });
  es.addEventListener('openings', refreshSoon);
  es.addEventListener('error', () => {
    if (stream !== es) return;
    setLive('reconnecting…', false);
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      stream = null;
      retryLater();
    }
  });
  fallbackTimer = setInterval(refreshSoon, FALLBACK_REFRESH_MS);
}

function retryLater() {
  reconnectTimer = setTimeout(checkThenListen, reconnectMs);
  reconnectMs = Math.min(reconnectMs * 2, RECONNECT_MAX_MS);
}

/** Still logged in? Then the stream again; else the login. */
async function checkThenListen() {
  try {
    const s = await api('GET', '/api/session');
    setSession(s.csrf ?? '');
    listen();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showLogin('Your session has ended: log in again.', 'error');
    retryLater();
  }
}

function stopListening() {
  stream?.close();
  stream = null;
  clearTimeout(reconnectTimer);
  clearInterval(fallbackTimer);
  clearTimeout(refreshTimer);
  ui.live.hidden = true;
}

// ---- loading ---------------------------------------------------------------

let loading = null;
let again = false;

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(load, REFRESH_DEBOUNCE_MS);
}

/**
 * Devices and openings, asked together; one load at a time. A call while one
 * runs asks once more after it, and resolves only when that one is drawn: a
 * caller that just changed something (Close) sees the picture after its change.
 */
async function load() {
  if (loading) {
    again = true;
    return loading;
  }
  loading = (async () => {
    do {
      again = false;
      try {
        const [d, o] = await Promise.all([api('GET', '/api/devices'), api('GET', '/api/openings')]);
        if (loggedIn()) picture.render(d.devices, o.openings, d.truncated || o.truncated);
      } catch (err) {
        failed('Could not read the router\'s openings', err);
      }
    } while (again);
  })();
  try {
    await loading;
  } finally {
    loading = null;
  }
}

// ---- what the buttons and forms do ---------------------------------------------

/** Close a live mapping, or remove a static opening from the policy file. */
async function closeOpening(o, row) {
  const button = row.refs.button;
  const card = row.closest('.device');
  button.disabled = true;
  try {
    if (o.origin === 'static') {
      await api('DELETE', `/api/statics/${encodeURIComponent(staticName(o))}`);
      say(`Removed the static opening ${staticName(o)}: ${describe(o)}.`);
    } else {
      await api('DELETE', `/api/openings/${encodeURIComponent(o.id)}`);
      // A client that renews (PCP, NAT-PMP, UPnP) simply asks again: closing is not blocking.
      say(`Closed ${describe(o)}. The app may ask for it again; to keep it closed, add a deny rule to the policy file.`);
    }
    await load();
    // The row is gone with its button: the keyboard goes on from the device's heading.
    if (!row.isConnected && card?.isConnected) card.refs.name.focus();
  } catch (err) {
    failed(o.origin === 'static' ? 'Could not remove it' : 'Could not close it', err);
  } finally {
    button.disabled = false;
  }
}

/** "Allow TCP 443 from the internet to this device": POST /api/statics. */
async function openPort(device, { protocol, port, description }, form) {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return say('A port is a whole number from 1 to 65535.', 'error');
  const what = `${protocol.toUpperCase()} port ${port}`;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    await api('POST', '/api/statics', { device: device.lladdr, protocol, port, ...(description ? { description } : {}) });
    say(`Opened ${what} from the internet to ${deviceName(device)}.`);
    form.reset();
    await load();
  } catch (err) {
    failed(`Could not open ${what} to ${deviceName(device)}`, err);
  } finally {
    button.disabled = false;
  }
}

// ---- start -----------------------------------------------------------------------

(async () => {
  try {
    // Logged in already (the cookie outlives a reload): the session's CSRF token again.
    const s = await api('GET', '/api/session');
    showApp(s.csrf ?? '');
  } catch (err) {
    ui.login.hidden = false;
    if (!(err instanceof ApiError && err.status === 401)) say(`The router did not answer as expected: ${err.message}`, 'error');
    ui.secret.focus();
  }
})();
