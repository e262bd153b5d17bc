// The admin page: every device of the LAN drawn as device → internet with what
// the internet reaches on it, from the daemon's admin API (docs/admin-api.yaml).
//
// - Descriptions and lease names come from the network: they only ever enter
//   the page as text nodes (`el` below), never as markup.
// - The page re-draws in place, keyed by device and opening, so a live update
//   neither steals the keyboard's focus nor wipes a half-typed form.
// - Live: /api/events says "something changed"; the page asks again at most
//   every REFRESH_DEBOUNCE_MS, and every FALLBACK_REFRESH_MS anyway (new
//   devices and packet counts raise no event). A dropped stream comes back
//   with a growing pause, never more than RECONNECT_MAX_MS.

const REQUEST_TIMEOUT_MS = 10_000;
const REFRESH_DEBOUNCE_MS = 250;
const FALLBACK_REFRESH_MS = 30_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;

const ORIGINS = { pcp: 'PCP', natpmp: 'NAT-PMP', upnp: 'UPnP', static: 'static' };

const $ = (id) => document.getElementById(id);
const ui = {
  login: $('login'), loginForm: $('login-form'), secret: $('secret'),
  app: $('app'), devices: $('devices'), summary: $('summary'),
  message: $('message'), live: $('live'), logout: $('logout'),
};

/** An element with text children only: strings become text nodes, never markup. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c);
  return e;
}

// ---- talking to the API --------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = null;

async function api(method, path, body) {
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
    throw new ApiError(0, `the router did not answer (${err.name === 'TimeoutError' ? 'no answer in 10 s' : err.message})`);
  }
  const text = await res.text().catch(() => '');
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const said = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, said);
  }
  return data;
}

function say(text, kind = 'ok') {
  ui.message.className = `message ${kind}`;
  ui.message.textContent = text;
}

/** An API failure, said; a lost session goes back to the login. */
function failed(what, err) {
  if (err instanceof ApiError && err.status === 401 && csrf !== null) {
    loggedOut('Your session has ended: log in again.');
    return;
  }
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
    csrf = r.csrf;
    ui.secret.value = '';
    say('Logged in.');
    loggedIn();
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
  loggedOut('Logged out.');
});

function loggedIn() {
  ui.login.hidden = true;
  ui.app.hidden = false;
  ui.logout.hidden = false;
  listen();
  load();
}

function loggedOut(message) {
  csrf = null;
  stopListening();
  cards.clear();
  ui.devices.replaceChildren();
  ui.app.hidden = true;
  ui.logout.hidden = true;
  ui.login.hidden = false;
  say(message, message.startsWith('Logged out') ? 'ok' : 'error');
  ui.secret.focus();
}

// ---- live: the event stream ------------------------------------------------

let stream = null;
let reconnectTimer = 0;
let reconnectMs = RECONNECT_MIN_MS;
let fallbackTimer = 0;

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
    // EventSource retries by itself after a dropped stream; an answer that was
    // not a stream (401, 429) closes it for good, so the page tries again itself.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      stream = null;
      reconnectTimer = setTimeout(checkThenListen, reconnectMs);
      reconnectMs = Math.min(reconnectMs * 2, RECONNECT_MAX_MS);
    }
  });
  fallbackTimer = setInterval(refreshSoon, FALLBACK_REFRESH_MS);
}

async function checkThenListen() {
  try {
    const s = await api('GET', '/api/session');
    if (s.csrf) csrf = s.csrf;
    listen();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return loggedOut('Your session has ended: log in again.');
    reconnectTimer = setTimeout(checkThenListen, reconnectMs);
    reconnectMs = Math.min(reconnectMs * 2, RECONNECT_MAX_MS);
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

let refreshTimer = 0;
let loading = null;
let again = false;

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(load, REFRESH_DEBOUNCE_MS);
}

/** Devices and openings, asked together; one load at a time (a change meanwhile asks once more). */
async function load() {
  if (loading) {
    again = true;
    return loading;
  }
  loading = (async () => {
    try {
      const [d, o] = await Promise.all([api('GET', '/api/devices'), api('GET', '/api/openings')]);
      if (csrf !== null) render(d.devices, o.openings, d.truncated || o.truncated);
    } catch (err) {
      failed('Could not read the router\'s openings', err);
    }
  })();
  await loading;
  loading = null;
  if (again) {
    again = false;
    return load();
  }
}

// ---- drawing -----------------------------------------------------------------

/** Countdowns: the "time left" element and when its mapping ends (performance.now() ms). */
const countdowns = new Map();
/** Device cards by device id, kept across re-draws. */
const cards = new Map();

const bracket = (address) => (address.includes(':') ? `[${address}]` : address);
const deviceName = (d) => d.name || d.lladdr || d.id;

function timeLeft(seconds) {
  if (seconds <= 0) return 'ending…';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s left`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min left`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h left`;
}

setInterval(() => {
  const now = performance.now();
  for (const [node, until] of countdowns) {
    if (!node.isConnected) countdowns.delete(node);
    else node.textContent = timeLeft((until - now) / 1000);
  }
}, 1000);

/**
 * Puts `items` into `parent` in order, re-using the child keyed by each item's
 * key (made by `create`, refreshed by `update`). Nodes are only moved when the
 * order changed, so focus inside them stays where it was.
 */
function keyed(parent, store, items, key, create, update) {
  const wanted = items.map((item) => {
    const k = key(item);
    let node = store.get(k);
    if (!node) {
      node = create(item);
      store.set(k, node);
    }
    update(node, item);
    return node;
  });
  const keep = new Set(wanted);
  for (const [k, node] of store) {
    if (!keep.has(node)) {
      node.remove();
      store.delete(k);
    }
  }
  wanted.forEach((node, i) => {
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] ?? null);
  });
}

function render(devices, openings, truncated) {
  const byId = new Map(openings.map((o) => [o.id, o]));
  const focused = document.activeElement;
  const list = devices
    .map((d) => ({ device: d, openings: d.openings.map((id) => byId.get(id)).filter(Boolean) }))
    .sort((a, b) => deviceName(a.device).localeCompare(deviceName(b.device)) || a.device.id.localeCompare(b.device.id));
  keyed(ui.devices, cards, list, (x) => x.device.id, createCard, updateCard);

  const reachable = list.filter((x) => x.openings.length > 0).length;
  const count = list.reduce((n, x) => n + x.openings.length, 0);
  ui.summary.textContent = `${list.length} ${list.length === 1 ? 'device' : 'devices'}, ${reachable} reachable from the internet, ${count} ${count === 1 ? 'opening' : 'openings'}.` +
    (truncated ? ' The router has more than one listing holds: not all are shown.' : '');
  // A row that ended (expired, closed elsewhere) took the focus with it: it goes to the page's heading, not to nowhere.
  if (focused && focused !== document.body && !focused.isConnected) $('app-title').focus();
}

function createCard({ device }) {
  const headingId = `dev-${cards.size}-${Math.random().toString(36).slice(2, 8)}`;
  const refs = {};
  const card = el('article', { class: 'device', 'aria-labelledby': headingId },
    el('header', {},
      refs.name = el('h3', { id: headingId, tabindex: '-1' }),
      refs.ids = el('p', { class: 'ids' }),
      refs.addresses = el('ul', { class: 'addresses', 'aria-label': 'addresses' })),
    el('div', { class: 'path', 'aria-hidden': 'true' },
      refs.self = el('span', { class: 'node' }),
      refs.wire = el('span', { class: 'wire' }, refs.wireLabel = el('span')),
      el('span', { class: 'node net', text: 'internet' })),
    refs.state = el('p', { class: 'state' }),
    refs.openings = el('ul', { class: 'openings' }),
    refs.form = openForm(device, refs));
  card.refs = refs;
  refs.rows = new Map();
  return card;
}

function updateCard(card, { device, openings }) {
  const r = card.refs;
  card.device = device;
  r.name.textContent = deviceName(device);
  r.ids.textContent = [device.name ? device.lladdr : null, device.lladdr ? null : 'link-layer address not known', device.interfaces.join(', ')].filter(Boolean).join(' · ');
  r.addresses.replaceChildren(...device.addresses.map((a) => el('li', { text: a })));
  const open = openings.length > 0;
  card.classList.toggle('closed', !open);
  r.self.textContent = deviceName(device);
  r.wireLabel.textContent = open ? `${openings.length} open` : 'closed';
  r.state.textContent = open
    ? `The internet reaches ${deviceName(device)} on ${openings.length === 1 ? 'one opening' : `${openings.length} openings`}:`
    : 'Closed: nothing on the internet can start a connection to this device.';
  keyed(r.openings, r.rows, openings, (o) => o.id, createRow, updateRow);
  r.legend.textContent = `Open a port to ${deviceName(device)}`;
  r.form.hidden = !device.lladdr;
}

function createRow() {
  const refs = {};
  const row = el('li', { class: 'opening' },
    refs.what = el('span', { class: 'what' }),
    refs.origin = el('span', { class: 'origin' }),
    refs.about = el('span', { class: 'about' }),
    refs.left = el('span', { class: 'left' }),
    refs.button = el('button', { type: 'button', class: 'quiet' }));
  row.refs = refs;
  refs.button.addEventListener('click', () => closeOpening(row));
  return row;
}

/** "TCP 198.51.100.1:40001 → 192.168.77.2:40001": what the internet reaches, and where it lands. */
function describe(o) {
  if (o.external && o.internal) {
    const outside = `${bracket(o.external.address)}:${o.external.port}`;
    const inside = `${bracket(o.internal.address)}:${o.internal.port}`;
    // An IPv6 pinhole is reached at the device's own address and port: nothing is translated.
    let s = `${o.protocol.toUpperCase()} ${outside === inside ? `${inside} (no translation)` : `${outside} → ${inside}`}`;
    if (o.remotePeer) s += ` (only with ${bracket(o.remotePeer.address)}:${o.remotePeer.port})`;
    else if (o.filters?.length > 0) s += ` (only from ${o.filters.join(', ')})`;
    return s;
  }
  // A static opening without one external endpoint (a pinhole: ports, to an address pattern).
  const protocols = (o.protocols ?? (o.protocol ? [o.protocol] : [])).join('/').toUpperCase();
  const ports = Array.isArray(o.ports) ? o.ports.map((p) => (p.min === p.max ? `${p.min}` : `${p.min}–${p.max}`)).join(', ') : String(o.port ?? '');
  return `${protocols} port ${ports}${o.to ? ` → ${o.to}` : ''}${o.from ? ` (only from ${o.from.join(', ')})` : ''}`;
}

function updateRow(row, o) {
  const r = row.refs;
  const isStatic = o.origin === 'static';
  row.opening = o;
  r.what.textContent = describe(o);
  r.origin.textContent = ORIGINS[o.origin] ?? o.origin;
  r.origin.className = `origin ${o.origin}`;
  const staticName = o.static ?? o.name;
  const about = [o.description && o.description !== staticName ? `“${o.description}”` : null, isStatic && staticName ? `policy: ${staticName}` : null];
  if (typeof o.packets === 'number') about.push(`${o.packets} ${o.packets === 1 ? 'packet' : 'packets'}`);
  r.about.textContent = about.filter(Boolean).join(' · ');
  if (typeof o.secondsLeft === 'number') {
    countdowns.set(r.left, performance.now() + o.secondsLeft * 1000);
    r.left.textContent = timeLeft(o.secondsLeft);
  } else {
    countdowns.delete(r.left);
    r.left.textContent = 'no expiry';
  }
  r.button.textContent = isStatic ? 'Remove' : 'Close';
  r.button.setAttribute('aria-label', `${isStatic ? 'Remove' : 'Close'} ${describe(o)}`);
}

// ---- changing things ---------------------------------------------------------

async function closeOpening(row) {
  const o = row.opening;
  const button = row.refs.button;
  const card = row.closest('.device');
  button.disabled = true;
  try {
    if (o.origin === 'static') {
      const name = o.static ?? o.name;
      await api('DELETE', `/api/statics/${encodeURIComponent(name)}`);
      say(`Removed the static opening ${name}: ${describe(o)}.`);
    } else {
      await api('DELETE', `/api/openings/${encodeURIComponent(o.id)}`);
      say(`Closed ${describe(o)}.`);
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

let formCount = 0;

/** "Allow TCP port 443 from the internet to this device": a static opening in the policy file. */
function openForm(device, refs) {
  const n = ++formCount;
  const id = (what) => `open-${n}-${what}`;
  const form = el('form', { class: 'open' },
    el('fieldset', {},
      refs.legend = el('legend', { text: 'Open a port' }),
      el('span', { class: 'field' },
        el('label', { for: id('protocol') }, 'Protocol'),
        el('select', { id: id('protocol'), name: 'protocol' }, el('option', { value: 'tcp', text: 'TCP' }), el('option', { value: 'udp', text: 'UDP' }))),
      el('span', { class: 'field' },
        el('label', { for: id('port') }, 'Port'),
        el('input', { id: id('port'), name: 'port', type: 'number', min: '1', max: '65535', required: true, inputmode: 'numeric' })),
      el('span', { class: 'field grow' },
        el('label', { for: id('description') }, 'Description'),
        el('input', { id: id('description'), name: 'description', type: 'text', maxlength: '64', placeholder: 'optional' })),
      el('button', { type: 'submit' }, 'Open')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = form.closest('.device')?.device ?? device;
    const data = new FormData(form);
    const port = Number(data.get('port'));
    if (!Number.isInteger(port) || port < 1 || port > 65535) return say('A port is a whole number from 1 to 65535.', 'error');
    const protocol = data.get('protocol') === 'udp' ? 'udp' : 'tcp';
    const description = String(data.get('description') ?? '').trim();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const body = { device: d.lladdr, protocol, port, ...(description ? { description } : {}) };
      await api('POST', '/api/statics', body);
      say(`Opened ${protocol.toUpperCase()} port ${port} from the internet to ${deviceName(d)}.`);
      form.reset();
      await load();
    } catch (err) {
      failed(`Could not open ${protocol.toUpperCase()} port ${port} to ${deviceName(d)}`, err);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// ---- start -----------------------------------------------------------------------

(async () => {
  try {
    const s = await api('GET', '/api/session');
    // A bearer session has no CSRF token; the page only ever has a cookie.
    csrf = s.csrf ?? '';
    loggedIn();
  } catch (err) {
    ui.login.hidden = false;
    if (!(err instanceof ApiError && err.status === 401)) say(`The router did not answer as expected: ${err.message}`, 'error');
    ui.secret.focus();
  }
})();
