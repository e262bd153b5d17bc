// --admin ADDR:PORT (config admin.listen): where the admin API listens.
// Loopback or one of the LAN's own addresses, never a wildcard (it includes
// the WAN's) nor the WAN's own. A LAN address also needs the kernel guard on
// its port (`guardedAdminPorts`): Linux takes a packet for any of its
// addresses on any interface, so binding alone does not keep the WAN out.

import { ConfigError } from '../../config.js';
import { isUnspecified, parseIp, type IpAddress } from '../../net/address.js';

export interface AdminListen {
  readonly address: IpAddress;
  readonly port: number;
  readonly loopback: boolean;
}

const EXAMPLE = '192.168.1.1:8080, or 127.0.0.1:8080 behind an SSH tunnel';

/** `ADDR:PORT` or `[ADDR]:PORT`, checked against the LAN's addresses; throws ConfigError with the reason. */
export function parseAdminListen(text: string, lanAddresses: readonly string[]): AdminListen {
  const m = /^\[([0-9A-Fa-f:.]{2,45})\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]{7,15}):(\d{1,5})$/.exec(text);
  const address = m ? parseIp(m[1] as string) : undefined;
  const port = Number(m?.[2]);
  const flag = `--admin ${JSON.stringify(text.slice(0, 64))}`;
  if (!address || !(port >= 1 && port <= 65535)) throw new ConfigError(`${flag}: expected ADDR:PORT or [ADDR]:PORT, e.g. ${EXAMPLE}`);
  if (isUnspecified(address)) throw new ConfigError(`${flag}: ${address} listens on every address, the WAN's too; give a LAN address (${EXAMPLE})`);
  const loopback = address === '::1' || /^127\./.test(address);
  if (!loopback && !lanAddresses.includes(address)) throw new ConfigError(`${flag}: ${address} is not one of the LAN's addresses; the admin page never faces the WAN (${EXAMPLE})`);
  return { address, port, loopback };
}

/** The TCP port the kernel guard keeps to the LAN: the admin port on a LAN address (loopback needs no guard). */
export function guardedAdminPorts(at: AdminListen | undefined): number[] {
  return at && !at.loopback ? [at.port] : [];
}
