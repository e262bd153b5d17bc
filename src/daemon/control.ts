// The daemon's answers on the control socket (src/server/control-socket.ts):
// policy reload and summary, the listing with each mapping's ID and device
// (`portcullis ls`), the daemon's health (`portcullis status`) and the
// admin's removals (`portcullis rm`). Everything is asked of the service's
// face; a removal goes through service.removeAsAdmin, so it is logged,
// recorded and taken out of the kernel like any other.

import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Mapping } from '../domain/mapping.js';
import type { FirewallBackend } from '../firewall/backend.js';
import { parseIp } from '../net/address.js';
import type { DhcpLeases } from '../net/dhcp-leases.js';
import type { Neighbours } from '../net/neighbours.js';
import { summarize, type LoadedPolicy } from '../policy/load.js';
import { ControlRefusal, type ControlHandler, type ControlRequest } from '../server/control-socket.js';
import { listing, mappingCounts, rowOf, type ListedMapping, type MappingCounts } from '../server/listing.js';
import type { MappingService } from '../service/mapping-service.js';
import { packageVersion } from '../version.js';
import type { ReloadReport } from './policy-keeper.js';
import type { UpstreamStatus } from './upstream.js';
import type { GuardState, LastRepair, RecentError, RecentEvents } from './recent.js';

/** A state directory holds a handful of files; more than this is not counted. */
const MAX_STORE_FILES = 256;

export interface StatusReport {
  version: string;
  /** ISO time. */
  startedAt: string;
  uptimeSeconds: number;
  epochSeconds: number;
  mappings: MappingCounts;
  firewall: {
    backend: string;
    /** The LAN guard as last found (absent: not checked yet). */
    guard?: GuardState;
    /** How often the kernel is checked and repaired; 0: never (a backend that cannot be checked). */
    reconcileSeconds: number;
    lastRepair?: LastRepair;
  };
  store: { dir: string; bytes: number; files: number };
  errors: readonly RecentError[];
  /** The RFC 7648 proxy: the ISP's PCP server, or why there is none. */
  upstream?: UpstreamStatus;
}

export interface RemoveReport {
  removed: ListedMapping[];
  /** Static forwards that matched too and stay (the policy file's). */
  keptStatic: number;
}

export interface ControlParts {
  service: MappingService;
  firewall: FirewallBackend;
  policy: () => LoadedPolicy;
  reloadPolicy: () => Promise<ReloadReport>;
  neighbours: Neighbours;
  recent: RecentEvents;
  stateDir: string;
  reconcileSeconds: number;
  /** The daemon's DHCP leases (read by its lease check), for naming devices. */
  leases?: DhcpLeases;
  upstream?: () => UpstreamStatus;
}

export function controlHandler(p: ControlParts): ControlHandler {
  const leases = p.leases;
  /** The lease's host name, else the link-layer address the neighbour table (or the lease) gives. */
  const deviceOf = (m: Mapping): string | undefined => {
    const lease = leases?.leaseOf(m.internalAddress);
    if (lease?.hostname) return lease.hostname;
    const d = p.neighbours.deviceOf(m.internalAddress);
    return d !== undefined ? d.slice(d.indexOf('/') + 1) : lease?.mac;
  };
  return async (req: ControlRequest) => {
    switch (req.op) {
      case 'reload':
        return p.reloadPolicy();
      case 'policy':
        return summarize(p.policy());
      case 'list':
        // Bounded and throttled by its owner; a failed read names nobody.
        await p.neighbours.refresh();
        return listing(p.service, p.policy(), deviceOf);
      case 'status':
        return status(p);
      case 'remove':
        return remove(p, req, deviceOf);
    }
  };
}

function status(p: ControlParts): StatusReport {
  const now = Date.now();
  return {
    version: packageVersion(),
    startedAt: new Date(p.recent.startedAt).toISOString(),
    uptimeSeconds: Math.floor((now - p.recent.startedAt) / 1000),
    epochSeconds: p.service.epochSeconds(),
    mappings: mappingCounts(p.service.mappings()),
    firewall: { backend: p.firewall.name, guard: p.recent.guard(), reconcileSeconds: p.firewall.intact && p.firewall.reconcile ? p.reconcileSeconds : 0, lastRepair: p.recent.lastRepair() },
    store: { dir: p.stateDir, ...storeSize(p.stateDir) },
    errors: p.recent.errors(),
    upstream: p.upstream?.(),
  };
}

/** Bytes of the state directory's regular files (the socket and anything else left out). */
export function storeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  let names: string[];
  try {
    names = readdirSync(dir).slice(0, MAX_STORE_FILES);
  } catch {
    return { bytes, files };
  }
  for (const name of names) {
    try {
      const st = lstatSync(join(dir, name));
      if (!st.isFile()) continue;
      bytes += st.size;
      files++;
    } catch {
      // Gone between the listing and the look (a snapshot renamed into place).
    }
  }
  return { bytes, files };
}

async function remove(p: ControlParts, req: Extract<ControlRequest, { op: 'remove' }>, deviceOf: (m: Mapping) => string | undefined): Promise<RemoveReport> {
  const { id, client, port } = req;
  let match: (m: Mapping) => boolean;
  let what: string;
  if (id !== undefined) {
    if (!Number.isSafeInteger(id) || id < 0 || client !== undefined || port !== undefined) throw new ControlRefusal('remove: an ID (a whole number) alone, or a client address with an optional port');
    match = (m) => m.id === id;
    what = `mapping ${id}`;
  } else {
    const address = typeof client === 'string' ? parseIp(client) : undefined;
    if (!address) throw new ControlRefusal(`remove: ${client === undefined ? 'an ID or a client address is needed' : `'${String(client).slice(0, 64)}' is not an address`}`);
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new ControlRefusal('remove: the port is a whole number from 1 to 65535');
    // The client that asked, or the host a third party asked for: either way that device's opening.
    match = (m) => (m.client === address || m.internalAddress === address) && (port === undefined || m.internalPort === port);
    what = `mapping of ${address}${port !== undefined ? ` on port ${port}` : ''}`;
  }
  const matching = p.service.mappings(match);
  if (matching.length === 0) throw new ControlRefusal(`no ${what} (portcullis ls shows the mappings and their IDs)`);
  if (matching.every((m) => m.origin === 'static')) {
    const names = matching.map((m) => m.description.replace(/^static:/, '')).join(', ');
    throw new ControlRefusal(`${what} is the static forward '${names}': it is the policy file's; remove it there and run portcullis policy reload`);
  }
  const r = await p.service.removeAsAdmin(match);
  if (!r.ok) throw new Error('the firewall refused the change: nothing was removed (the daemon log says why)');
  return { removed: r.removed.map((m) => rowOf(p.service, m, deviceOf(m))), keptStatic: matching.filter((m) => m.origin === 'static').length };
}
