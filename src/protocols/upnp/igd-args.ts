// Typed readers over an IGD action's in arguments (igd.ts): ports, protocols,
// addresses, booleans. Every failure is already the action's answer: 402
// Invalid Args, or the action's own code where the service defines one.

import { familyOf, isLinkLocal, isMulticast, isUnspecified, parseIp, type IpAddress } from '../../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP, protocolByName } from '../../net/ipproto.js';
import { UpnpError, WanIpConnectionError as W, WanIpv6FirewallControlError as F, type UpnpErrorDef } from './soap.js';

export type ActionResult = { ok: true; out: [string, string][] } | { ok: false; error: UpnpErrorDef; detail: string };

export const fail = (error: UpnpErrorDef, detail: string): ActionResult => ({ ok: false, error, detail });
export const invalid = (detail: string) => fail(UpnpError.INVALID_ARGS, detail);

export type Parsed<T> = { ok: true; value: T } | { ok: false; result: ActionResult };

/** Typed readers over the in arguments; every failure is a 402 (or the action's own code). */
export class Args {
  constructor(private readonly args: ReadonlyMap<string, string>) {}

  get(name: string): string {
    return this.args.get(name) ?? '';
  }

  uint(name: string): Parsed<number> {
    const v = this.get(name).trim();
    if (!/^\d{1,10}$/.test(v) || Number(v) > 0xffffffff) return { ok: false, result: invalid(`${name} ${JSON.stringify(v.slice(0, 32))} is not an unsigned number`) };
    return { ok: true, value: Number(v) };
  }

  port(name: string, zeroOk: boolean): Parsed<number> {
    const n = this.uint(name);
    if (!n.ok) return n;
    if (n.value > 65535 || (!zeroOk && n.value === 0)) return { ok: false, result: invalid(`${name} ${n.value} is not a port`) };
    return n;
  }

  boolean(name: string): Parsed<boolean> {
    const v = this.get(name).trim().toLowerCase();
    if (v === '1' || v === 'true' || v === 'yes') return { ok: true, value: true };
    if (v === '0' || v === 'false' || v === 'no') return { ok: true, value: false };
    return { ok: false, result: invalid(`${name} is not a boolean`) };
  }

  /** TCP or UDP; case is forgiven (some clients send "udp"). */
  protocol(name: string): Parsed<number> {
    const p = protocolByName(this.get(name).trim());
    return p !== undefined ? { ok: true, value: p } : { ok: false, result: invalid(`${name} must be TCP or UDP`) };
  }

  /** WANIPv6FirewallControl protocol numbers; 65535 = any (returned as 0). */
  pinholeProtocol(name: string): Parsed<number> {
    const n = this.uint(name);
    if (!n.ok) return n;
    if (n.value === 65535) return { ok: true, value: 0 };
    if (n.value !== IPPROTO_TCP && n.value !== IPPROTO_UDP) return { ok: false, result: fail(F.PROTOCOL_NOT_SUPPORTED, `protocol ${n.value}`) };
    return n;
  }

  /** A literal address of the family; names are never resolved. */
  address(name: string, family: 4 | 6): Parsed<IpAddress> {
    const text = this.get(name).trim();
    const a = text.length <= 64 ? parseIp(text) : undefined;
    if (!a || familyOf(a) !== family) return { ok: false, result: invalid(`${name} ${JSON.stringify(text.slice(0, 64))} is not an IPv${family} address`) };
    if (isUnspecified(a) || isMulticast(a) || (family === 6 && isLinkLocal(a)) || (family === 4 && (a.startsWith('127.') || a.endsWith('.255')))) {
      return { ok: false, result: fail(UpnpError.ACTION_NOT_AUTHORIZED, `${name} ${a} cannot receive a mapping`) };
    }
    return { ok: true, value: a };
  }

  /** Empty (or a wildcard spelling) = any remote; otherwise a literal address. */
  remoteHost(name: string, family: 4 | 6): Parsed<IpAddress | undefined> {
    const text = this.get(name).trim();
    if (text === '' || text === '*' || (family === 4 && text === '0.0.0.0') || (family === 6 && text === '::')) return { ok: true, value: undefined };
    const a = text.length <= 64 ? parseIp(text) : undefined;
    if (!a || familyOf(a) !== family) return { ok: false, result: invalid(`${name} ${JSON.stringify(text.slice(0, 64))} is not an IPv${family} address`) };
    return { ok: true, value: a };
  }

  range(): Parsed<{ start: number; end: number }> {
    const start = this.port('NewStartPort', true);
    if (!start.ok) return start;
    const end = this.port('NewEndPort', true);
    if (!end.ok) return end;
    if (start.value > end.value) return { ok: false, result: fail(W.INCONSISTENT_PARAMETERS, `start ${start.value} > end ${end.value}`) };
    return { ok: true, value: { start: start.value, end: end.value } };
  }
}
