// What the router's interfaces look like: which addresses to bind on the LAN
// side, which prefixes count as "the LAN", and the WAN's external address.

import { existsSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { familyOf, isLinkLocal, parsePrefix, parseIp, prefixContains, type IpAddress, type Prefix } from './address.js';

export interface LocalAddress {
  readonly address: IpAddress;
  readonly family: 4 | 6;
  readonly interface: string;
  /** Link-local IPv6 addresses bind as fe80::x%iface. */
  readonly bindAddress: string;
  readonly prefix: Prefix;
}

export type InterfaceReader = () => NodeJS.Dict<NetworkInterfaceInfo[]>;

export function lanAddresses(names: readonly string[], read: InterfaceReader = networkInterfaces): LocalAddress[] {
  const all = read();
  const out: LocalAddress[] = [];
  for (const name of names) {
    for (const info of all[name] ?? []) {
      const address = parseIp(info.address);
      const prefix = info.cidr ? parsePrefix(info.cidr) : undefined;
      if (!address || !prefix) continue;
      const family = familyOf(address);
      out.push({
        address,
        family,
        interface: name,
        bindAddress: family === 6 && isLinkLocal(address) ? `${address}%${name}` : address,
        prefix,
      });
    }
  }
  return out;
}

/**
 * Every address the router owns on a real interface (loopback excluded: no
 * LAN packet comes from it, and tests serve on it).
 */
export function routerAddresses(read: InterfaceReader = networkInterfaces): Set<IpAddress> {
  const out = new Set<IpAddress>();
  for (const infos of Object.values(read())) for (const i of infos ?? []) {
    if (i.internal) continue;
    const a = parseIp(i.address);
    if (a) out.add(a);
  }
  return out;
}

/** The WAN interface's first global IPv4 address. */
export function wanIPv4(name: string, read: InterfaceReader = networkInterfaces): IpAddress | undefined {
  for (const info of read()[name] ?? []) {
    const a = parseIp(info.address);
    if (a && familyOf(a) === 4 && !isLinkLocal(a)) return a;
  }
  return undefined;
}

/**
 * The interface exists, addresses or not: the interface list only shows
 * interfaces that are up and running, and a WAN without carrier at boot must
 * not stop the daemon from starting.
 */
export function interfaceExists(name: string, read: InterfaceReader = networkInterfaces): boolean {
  return read()[name] !== undefined || (/^[A-Za-z0-9_.-]{1,15}$/.test(name) && existsSync(`/sys/class/net/${name}`));
}

export function inAnyPrefix(prefixes: readonly Prefix[], addr: IpAddress): boolean {
  return prefixes.some((p) => prefixContains(p, addr));
}
