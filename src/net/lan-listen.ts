// `ADDR:PORT` or `[ADDR]:PORT` for a listener that must never face the WAN
// (--metrics, --admin): loopback, or one of the LAN's own addresses. Never a
// wildcard, which includes the WAN's. Each flag words its own refusal.

import { isUnspecified, parseIp, type IpAddress } from './address.js';

export interface LanListen {
  readonly address: IpAddress;
  readonly port: number;
  /** Loopback needs no kernel guard; a LAN address does (Linux takes a packet for any local address on any interface). */
  readonly loopback: boolean;
}

export type LanListenResult = { ok: true; listen: LanListen } | { ok: false; why: 'syntax' } | { ok: false; why: 'wildcard' | 'not-lan'; address: IpAddress };

export function parseLanListen(text: string, lanAddresses: readonly string[]): LanListenResult {
  const m = /^\[([0-9A-Fa-f:.]{2,45})\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]{7,15}):(\d{1,5})$/.exec(text);
  const address = m ? parseIp(m[1] as string) : undefined;
  const port = Number(m?.[2]);
  if (!address || !(port >= 1 && port <= 65535)) return { ok: false, why: 'syntax' };
  if (isUnspecified(address)) return { ok: false, why: 'wildcard', address };
  const loopback = address === '::1' || /^127\./.test(address);
  if (!loopback && !lanAddresses.includes(address)) return { ok: false, why: 'not-lan', address };
  return { ok: true, listen: { address, port, loopback } };
}

/** The TCP ports the kernel guard must keep to the LAN: those of listeners on a LAN address. */
export function guardedPorts(...listens: readonly (LanListen | undefined)[]): number[] {
  return listens.flatMap((l) => (l && !l.loopback ? [l.port] : []));
}
