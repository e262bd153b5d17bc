// POST /api/statics and DELETE /api/statics/{name}: the admin opens a port to
// a device (known by its link-layer address) or removes a static opening of
// any kind, and the policy file says so (the daemon's policy keeper edits
// it, src/policy/edit.ts, and reloads it). Every field of the body is
// checked here, with an answer that names it; the file's own checks (the
// loader and its schema) come after, in the edit.

import type { FileStatic } from '../../policy/load.js';
import { MAX_DEVICE_PORTS } from '../../policy/load.js';
import { PolicyEditError, type StaticEdit } from '../../policy/edit.js';
import type { DhcpLeases } from '../../net/dhcp-leases.js';

/** A static opening's name in the policy file (the schema's `name`). */
export const STATIC_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const MAX_DESCRIPTION = 500;
const KEYS = new Set(['device', 'protocol', 'port', 'ports', 'description', 'name']);

export interface Answer {
  status: number;
  body?: unknown;
}
const bad = (message: string): Answer => ({ status: 400, body: { error: message } });

/** The edit POST /api/statics asks for, or the 400 that says what is wrong with its body. */
export function addition(body: Buffer, taken: (name: string) => boolean, leases: DhcpLeases | undefined): StaticEdit | Answer {
  const entry = deviceEntry(body, taken, leases);
  return 'status' in entry ? entry : { op: 'add', entry };
}

/** The body of POST /api/statics as a policy-file entry, or the 400 that says what is wrong. */
function deviceEntry(body: Buffer, taken: (name: string) => boolean, leases: DhcpLeases | undefined): FileStatic | Answer {
  let asked: unknown;
  try {
    asked = JSON.parse(body.toString('utf8'));
  } catch {
    return bad('the body is not JSON: send {"device": "52:54:00:12:34:56", "protocol": "tcp", "port": 443}');
  }
  if (typeof asked !== 'object' || asked === null || Array.isArray(asked)) return bad('the body is a JSON object: {"device": …, "protocol": …, "port": …}');
  const a = asked as Record<string, unknown>;
  const unknown = Object.keys(a).find((k) => !KEYS.has(k));
  if (unknown !== undefined) return bad(`unknown field ${JSON.stringify(unknown.slice(0, 40))} (expected: ${[...KEYS].join(', ')})`);
  if (typeof a.device !== 'string' || !MAC.test(a.device)) return bad('device: expected the device\'s link-layer address, like 52:54:00:12:34:56');
  const mac = a.device.toLowerCase();
  if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0 || mac === '00:00:00:00:00:00') return bad('device: a group (multicast) or zero link-layer address is no one device');
  if (a.protocol !== 'tcp' && a.protocol !== 'udp') return bad('protocol: expected "tcp" or "udp"');
  if ((a.port === undefined) === (a.ports === undefined)) return bad('give exactly one of port (a number 1-65535) or ports ("8000-8010")');
  let ports: number | string;
  let min: number;
  let max: number;
  if (a.port !== undefined) {
    if (typeof a.port !== 'number' || !Number.isInteger(a.port) || a.port < 1 || a.port > 65535) return bad('port: expected a whole number from 1 to 65535');
    ports = min = max = a.port;
  } else {
    const m = typeof a.ports === 'string' ? /^(\d{1,5})-(\d{1,5})$/.exec(a.ports) : null;
    min = Number(m?.[1]);
    max = Number(m?.[2]);
    if (!m || min < 1 || max > 65535 || min > max) return bad('ports: expected a range like "8000-8010" within 1-65535, the start not above the end');
    if (max - min + 1 > MAX_DEVICE_PORTS) return bad(`ports: at most ${MAX_DEVICE_PORTS} ports in one opening (each is an IPv4 forward of its own)`);
    ports = min === max ? min : `${min}-${max}`;
  }
  let description: string | undefined;
  if (a.description !== undefined) {
    // eslint-disable-next-line no-control-regex
    if (typeof a.description !== 'string' || a.description.length > MAX_DESCRIPTION || /[\x00-\x1f\x7f]/.test(a.description)) {
      return bad(`description: expected text of at most ${MAX_DESCRIPTION} characters, on one line`);
    }
    description = a.description;
  }
  let name: string;
  if (a.name !== undefined) {
    if (typeof a.name !== 'string' || !STATIC_NAME.test(a.name)) return bad('name: expected letters, digits, _ . - (at most 63, starting with a letter or digit)');
    name = a.name;
  } else {
    name = freeName(mac, a.protocol, min === max ? String(min) : `${min}-${max}`, taken, leases);
  }
  return { name, ...(description !== undefined ? { description } : {}), device: { mac, protocol: a.protocol, ports } };
}

/**
 * A readable name nobody uses yet: the device's DHCP host name (else its
 * link-layer address), the protocol and the port, e.g. `nas-tcp-443`.
 */
function freeName(mac: string, protocol: string, ports: string, taken: (name: string) => boolean, leases: DhcpLeases | undefined): string {
  const host = [...(leases?.leases() ?? [])].find((l) => l.mac === mac && l.hostname !== undefined)?.hostname;
  const base = (host ?? `device-${mac.replace(/:/g, '')}`).replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 40) || `device-${mac.replace(/:/g, '')}`;
  const stem = `${base}-${protocol}-${ports}`;
  if (!taken(stem)) return stem;
  for (let i = 2; i < 1000; i++) if (!taken(`${stem}-${i}`)) return `${stem}-${i}`;
  return `${stem}-${Date.now().toString(36)}`;
}

/** What a refused edit answers: the page shows the message as it is. */
export function editRefused(err: unknown): Answer {
  if (!(err instanceof PolicyEditError)) throw err;
  const status = { exists: 409, unknown: 404, 'no-file': 409, 'read-only': 403, invalid: 409, io: 500 }[err.refusal];
  return { status, body: { error: err.message } };
}

/** The edit DELETE /api/statics/{name} asks for, or its 400. */
export function removal(name: string): StaticEdit | Answer {
  return STATIC_NAME.test(name) ? { op: 'remove', name } : bad('a static opening\'s name is letters, digits, _ . - (at most 63, starting with a letter or digit), as GET /api/openings shows it in `static`');
}
