// The daemon's two calls for the admin API: `prepareAdmin` before anything
// starts (a WAN or wildcard address, or a bad password hash, stops the start
// there, and the port joins the kernel guard), `startAdmin` once the service
// and the LAN guard are up (the token file is made then, in the state
// directory the store has made).

import { hostname } from 'node:os';
import { ConfigError, type Config } from '../../config.js';
import type { LocalAddress } from '../../net/interfaces.js';
import { adminToken, parsePasswordHash, type ScryptHash } from './auth.js';
import { adminHostNames, guardedAdminPorts, parseAdminListen, type AdminListen } from './listen.js';
import { AdminServer, type AdminParts } from './server.js';

export interface PreparedAdmin {
  readonly at: AdminListen;
  readonly password: ScryptHash | undefined;
  /** Host names the page is opened at (server.ts, ourHost): the router's own and the config's. */
  readonly hostNames: readonly string[];
}

/** undefined when the admin API is off (no admin.listen). */
export function prepareAdmin(cfg: Config['admin'], lan: readonly LocalAddress[]): PreparedAdmin | undefined {
  if (cfg?.listen === undefined) return undefined;
  const at = parseAdminListen(cfg.listen, lan.map((l) => l.address));
  return { at, password: cfg.passwordHash !== undefined ? parsePasswordHash(cfg.passwordHash) : undefined, hostNames: adminHostNames(hostname(), cfg.hostNames ?? []) };
}

export const adminGuardedPorts = (a: PreparedAdmin | undefined): number[] => guardedAdminPorts(a?.at);

/** Listens; returns the stop. */
export async function startAdmin(a: PreparedAdmin, stateDir: string, parts: Omit<AdminParts, 'at' | 'token' | 'password' | 'hostNames'>): Promise<() => Promise<void>> {
  const server = new AdminServer({ ...parts, at: a.at, token: adminToken(stateDir), password: a.password, hostNames: a.hostNames });
  try {
    await server.start();
  } catch (err) {
    throw new ConfigError(`--admin ${a.at.address}:${a.at.port}: cannot listen: ${(err as Error).message}`);
  }
  return () => server.stop();
}
