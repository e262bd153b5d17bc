// The picture: one card per device, drawn as device → internet, with a row
// per opening and a form to open a port, and a last card for the openings no
// device is behind. It only draws; what a click or a
// form does is the page's (app.js, through `actions`).
//
// - Descriptions and lease names come from the network: they only ever enter
//   the page as text nodes (`el`), never as markup.
// - Re-drawn in place, keyed by device and by opening: a live update neither
//   steals the keyboard's focus nor wipes a half-typed form.

const ORIGINS = { pcp: 'PCP', natpmp: 'NAT-PMP', upnp: 'UPnP', static: 'static' };
/** The key of the "Other openings" card among the device cards (no device id is empty). */
const OTHER = '';

/** An element with text children only: strings become text nodes, never markup. */
export function el(tag, attributes = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c);
  return e;
}

/** Longest piece of a client's text shown (the API bounds it too; a card should not be a page). */
const MAX_SHOWN = 120;

/**
 * A name or description from the network, fit to show: control characters and the
 * bidirectional overrides that could make it read as something else are shown as '?'
 * (as `portcullis ls` does on a terminal), and a long one is cut.
 */
export function shown(text) {
  const plain = String(text).replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '?');
  return plain.length > MAX_SHOWN ? `${plain.slice(0, MAX_SHOWN)}…` : plain;
}

const bracket = (address) => (address.includes(':') ? `[${address}]` : address);
export const deviceName = (d) => shown(d.name || d.lladdr || d.id);
/** The policy file's name of a static opening. */
export const staticName = (o) => o.static ?? o.name;

/** "TCP 198.51.100.1:40001 → 192.168.77.2:40001": what the internet reaches, and where it lands. */
export function describe(o) {
  if (o.external && o.internal) {
    const outside = `${bracket(o.external.address)}:${o.external.port}`;
    const inside = `${bracket(o.internal.address)}:${o.internal.port}`;
    // An IPv6 pinhole is reached at the device's own address and port: nothing is translated.
    let s = `${o.protocol.toUpperCase()} ${outside === inside ? `${inside} (no translation)` : `${outside} → ${inside}`}`;
    if (o.remotePeer) s += ` (only with ${bracket(o.remotePeer.address)}:${o.remotePeer.port})`;
    else if (o.filters?.length > 0) s += ` (only from ${o.filters.join(', ')})`;
    return s;
  }
  // A static opening without one external endpoint: a pinhole (ports, to an address pattern), or
  // a device's opening, which says what it opens now (its IPv4 address, forwarded, and its IPv6 ones).
  const protocols = (o.protocols ?? (o.protocol ? [o.protocol] : [])).join('/').toUpperCase();
  const ports = Array.isArray(o.ports) ? o.ports.map((p) => (p.min === p.max ? `${p.min}` : `${p.min}–${p.max}`)).join(', ') : String(o.port ?? '');
  const to = o.kind === 'static-device' ? [o.ipv4, ...(o.ipv6 ?? [])].filter(Boolean).join(', ') || 'none of its addresses is known now' : o.to;
  return `${protocols} port ${ports}${to ? ` → ${to}` : ''}${o.from ? ` (only from ${o.from.join(', ')})` : ''}`;
}

function timeLeft(seconds) {
  if (seconds <= 0) return 'ending…';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s left`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min left`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h left`;
}

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

export class Picture {
  /**
   * `at`: the elements drawn into (devices, summary) and the heading that takes
   * the focus when what held it is gone. `actions.close(opening, row)` and
   * `actions.open(device, {protocol, port, description}, form)` do the work.
   */
  constructor(at, actions) {
    this.at = at;
    this.actions = actions;
    /** Device cards by device id, kept across re-draws. */
    this.cards = new Map();
    /** Each "time left" element and when its mapping ends (performance.now() ms). */
    this.countdowns = new Map();
    this.forms = 0;
    setInterval(() => this.tick(), 1000);
  }

  clear() {
    this.cards.clear();
    this.countdowns.clear();
    this.at.devices.replaceChildren();
  }

  render(devices, openings, truncated) {
    const byId = new Map(openings.map((o) => [o.id, o]));
    const focused = document.activeElement;
    const list = devices
      .map((d) => ({ device: d, openings: [...new Set(d.openings)].map((id) => byId.get(id)).filter(Boolean) }))
      .sort((a, b) => deviceName(a.device).localeCompare(deviceName(b.device)) || a.device.id.localeCompare(b.device.id));
    // What no device known now is behind (a pinhole to a whole prefix, or to an address not seen yet): a card of its own, last.
    const attached = new Set(list.flatMap((x) => x.openings.map((o) => o.id)));
    const others = openings.filter((o) => !attached.has(o.id));
    const cards = others.length > 0 ? [...list, { other: true, openings: others }] : list;
    keyed(this.at.devices, this.cards, cards, (x) => (x.other ? OTHER : x.device.id), (x) => (x.other ? this.otherCard() : this.card(x)), (card, x) => (x.other ? this.updateOther(card, x) : this.updateCard(card, x)));

    const reachable = list.filter((x) => x.openings.length > 0).length;
    // Each opening once: a pinhole that reaches two devices is on both cards.
    const count = byId.size;
    this.at.summary.textContent = `${list.length} ${list.length === 1 ? 'device' : 'devices'}, ${reachable} reachable from the internet, ${count} ${count === 1 ? 'opening' : 'openings'}.` +
      (truncated ? ' The router has more than one listing holds: not all are shown.' : '');
    // A row that ended (expired, closed elsewhere) took the focus with it: it goes to the heading, not to nowhere.
    if (focused && focused !== document.body && !focused.isConnected) this.at.heading.focus();
  }

  tick() {
    const now = performance.now();
    for (const [node, until] of this.countdowns) {
      if (!node.isConnected) this.countdowns.delete(node);
      else node.textContent = timeLeft((until - now) / 1000);
    }
  }

  card({ device }) {
    const n = ++this.forms;
    const refs = { rows: new Map() };
    const card = el('article', { class: 'device', 'aria-labelledby': `device-${n}` },
      el('header', {},
        refs.name = el('h3', { id: `device-${n}`, tabindex: '-1' }),
        refs.ids = el('p', { class: 'ids' }),
        refs.addresses = el('ul', { class: 'addresses', 'aria-label': 'addresses' })),
      // The drawing repeats what the sentence below it says, for the eye only.
      el('div', { class: 'path', 'aria-hidden': 'true' },
        refs.self = el('span', { class: 'node' }),
        el('span', { class: 'wire' }, refs.wireLabel = el('span')),
        el('span', { class: 'node net', text: 'internet' })),
      refs.state = el('p', { class: 'state' }),
      refs.openings = el('ul', { class: 'openings' }),
      refs.form = this.openForm(n, refs));
    card.refs = refs;
    card.device = device;
    return card;
  }

  /** The card of the openings no device is behind: the same rows, no form (a static opening names a device). */
  otherCard() {
    const n = ++this.forms;
    const refs = { rows: new Map() };
    const card = el('article', { class: 'device other', 'aria-labelledby': `device-${n}` },
      el('header', {}, refs.name = el('h3', { id: `device-${n}`, tabindex: '-1', text: 'Other openings' })),
      refs.state = el('p', { class: 'state' }),
      refs.openings = el('ul', { class: 'openings' }));
    card.refs = refs;
    return card;
  }

  updateOther(card, { openings }) {
    card.refs.state.textContent = `${openings.length === 1 ? 'One opening reaches' : `${openings.length} openings reach`} no device seen on the LAN now (a whole prefix, or an address not seen yet):`;
    keyed(card.refs.openings, card.refs.rows, openings, (o) => o.id, () => this.row(), (row, o) => this.updateRow(row, o));
  }

  updateCard(card, { device, openings }) {
    const r = card.refs;
    const name = deviceName(device);
    card.device = device;
    r.name.textContent = name;
    r.ids.textContent = [device.name ? device.lladdr : null, device.lladdr ? null : 'link-layer address not known', device.interfaces.join(', ')].filter(Boolean).join(' · ');
    r.addresses.replaceChildren(...device.addresses.map((a) => el('li', { text: a })));
    const open = openings.length > 0;
    card.classList.toggle('closed', !open);
    r.self.textContent = name;
    r.wireLabel.textContent = open ? `${openings.length} open` : 'closed';
    r.state.textContent = open
      ? `The internet reaches ${name} on ${openings.length === 1 ? 'one opening' : `${openings.length} openings`}:`
      : 'Closed: nothing on the internet can start a connection to this device.';
    keyed(r.openings, r.rows, openings, (o) => o.id, () => this.row(), (row, o) => this.updateRow(row, o));
    r.legend.textContent = `Open a port to ${name}`;
    // A static opening names the device by its link-layer address: without one there is nothing to name.
    r.form.hidden = !device.lladdr;
  }

  row() {
    const refs = {};
    const row = el('li', { class: 'opening' },
      refs.what = el('span', { class: 'what' }),
      refs.origin = el('span', { class: 'origin' }),
      refs.about = el('span', { class: 'about' }),
      refs.left = el('span', { class: 'left' }),
      refs.button = el('button', { type: 'button', class: 'quiet' }));
    row.refs = refs;
    refs.button.addEventListener('click', () => this.actions.close(row.opening, row));
    return row;
  }

  updateRow(row, o) {
    const r = row.refs;
    const isStatic = o.origin === 'static';
    const name = staticName(o);
    row.opening = o;
    r.what.textContent = describe(o);
    r.origin.textContent = ORIGINS[o.origin] ?? o.origin;
    r.origin.className = `origin ${o.origin}`;
    const about = [o.description && o.description !== name ? `“${shown(o.description)}”` : null, isStatic && name ? `policy: ${shown(name)}` : null];
    if (typeof o.packets === 'number') about.push(`${o.packets} ${o.packets === 1 ? 'packet' : 'packets'}`);
    r.about.textContent = about.filter(Boolean).join(' · ');
    if (typeof o.secondsLeft === 'number') {
      this.countdowns.set(r.left, performance.now() + o.secondsLeft * 1000);
      r.left.textContent = timeLeft(o.secondsLeft);
    } else {
      this.countdowns.delete(r.left);
      r.left.textContent = 'no expiry';
    }
    const verb = isStatic ? 'Remove' : 'Close';
    r.button.textContent = verb;
    r.button.setAttribute('aria-label', `${verb} ${describe(o)}`);
  }

  /** "Allow TCP port 443 from the internet to this device": a static opening in the policy file. */
  openForm(n, refs) {
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
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const fields = { protocol: data.get('protocol') === 'udp' ? 'udp' : 'tcp', port: Number(data.get('port')), description: String(data.get('description') ?? '').trim() };
      this.actions.open(form.closest('.device').device, fields, form);
    });
    return form;
  }
}
