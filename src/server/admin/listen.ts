// --admin ADDR:PORT (config admin.listen): where the admin API listens.
// Loopback or one of the LAN's own addresses, never a wildcard (it includes
// the WAN's) nor the WAN's own. A LAN address also needs the kernel guard on
// its port (`guardedAdminPorts`): Linux takes a packet for any of its
// addresses on any interface, so binding alone does not keep the WAN out.

import { ConfigError } from '../../config.js';
import { guardedPorts, parseLanListen, type LanListen } from '../../net/lan-listen.js';

export type AdminListen = LanListen;

const EXAMPLE = '192.168.1.1:8080, or 127.0.0.1:8080 behind an SSH tunnel';

/** `ADDR:PORT` or `[ADDR]:PORT`, checked against the LAN's addresses; throws ConfigError with the reason. */
export function parseAdminListen(text: string, lanAddresses: readonly string[]): AdminListen {
  const r = parseLanListen(text, lanAddresses);
  if (r.ok) return r.listen;
  const flag = `--admin ${JSON.stringify(text.slice(0, 64))}`;
  if (r.why === 'syntax') throw new ConfigError(`${flag}: expected ADDR:PORT or [ADDR]:PORT, e.g. ${EXAMPLE}`);
  if (r.why === 'wildcard') throw new ConfigError(`${flag}: ${r.address} listens on every address, the WAN's too; give a LAN address (${EXAMPLE})`);
  throw new ConfigError(`${flag}: ${r.address} is not one of the LAN's addresses; the admin page never faces the WAN (${EXAMPLE})`);
}

/** The TCP port the kernel guard keeps to the LAN: the admin port on a LAN address (loopback needs no guard). */
export function guardedAdminPorts(at: AdminListen | undefined): number[] {
  return guardedPorts(at);
}

/**
 * Suffixes under which the router's own host name is taken without being
 * configured: none of them can be registered on the internet (.home.arpa is
 * reserved for home networks, .local is mDNS, .lan is OpenWrt's default and
 * not delegated), so a rebinding page cannot be served from such a name.
 */
const LOCAL_SUFFIXES = ['', '.lan', '.local', '.home.arpa'];

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The Host names the page may be opened at, lower-cased: the router's own
 * host name as the system has it (a full name too, `gw.example.net`), its
 * first label alone and under the local-only suffixes, and the config's
 * `admin.hostNames`. An IP address, `localhost`, is checked apart.
 */
export function adminHostNames(ownName: string, configured: readonly string[]): string[] {
  const full = ownName.trim().toLowerCase().replace(/\.$/, '');
  const labels = full.split('.');
  const own = labels[0] ?? '';
  const mine = LABEL.test(own) && own !== 'localhost' ? [...(labels.length > 1 && labels.every((l) => LABEL.test(l)) ? [full] : []), ...LOCAL_SUFFIXES.map((s) => own + s)] : [];
  return [...new Set([...mine, ...configured.map((n) => n.toLowerCase())])];
}
