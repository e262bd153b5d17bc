// --metrics ADDR:PORT, checked before anything starts. Apart from the
// Prometheus registry (prometheus.ts) so that checking the flag does not load
// prom-client: the daemon imports that only when metrics are on.

import { parseLanListen, type LanListen } from '../net/lan-listen.js';

/**
 * --metrics ADDR:PORT ([ADDR]:PORT for IPv6): loopback or one of the LAN's
 * own addresses, never the WAN side or a wildcard (which includes it).
 */
export function parseMetricsListen(text: string, lanAddresses: readonly string[]): ({ ok: true } & LanListen) | { ok: false; error: string } {
  const r = parseLanListen(text, lanAddresses);
  if (r.ok) return { ok: true, ...r.listen };
  if (r.why === 'syntax') return { ok: false, error: `--metrics ${JSON.stringify(text.slice(0, 64))}: expected ADDR:PORT, e.g. 127.0.0.1:9351 or [::1]:9351` };
  if (r.why === 'wildcard') return { ok: false, error: `--metrics ${text}: ${r.address} listens on every address, the WAN's too; give loopback or a LAN address (127.0.0.1:9351 is the usual choice)` };
  return { ok: false, error: `--metrics ${text}: ${r.address} is neither loopback nor a LAN address; metrics never face the WAN (127.0.0.1:9351 is the usual choice)` };
}
