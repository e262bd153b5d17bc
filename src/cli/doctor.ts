// portcullis doctor: the checks, with the settings serve would use.

import { parseArgs } from 'node:util';
import { ROUTER_OPTIONS, routerFlags } from './flags.js';
import { loadConfigFile, resolveConfig } from '../config.js';
import { formatChecks, runChecks } from '../doctor/checks.js';
import { systemView } from '../doctor/system.js';
import { upstreamProber } from './upstream-probe.js';

export async function doctor(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ...ROUTER_OPTIONS, policy: { type: 'string' }, admin: { type: 'string' } }, strict: true });
  const file = values.config ? loadConfigFile(values.config) : {};
  const cfg = resolveConfig(file, { ...routerFlags(values), policy: values.policy, admin: { listen: values.admin } });
  const checks = await runChecks(
    { lan: cfg.lan, wans: cfg.wans, externalIp: cfg.externalIp, nft: cfg.nft, nat44: cfg.nat44, upstreamPcp: cfg.upstreamPcp, adminListen: cfg.admin?.listen, policy: cfg.policy },
    { ...systemView(), upstreamPcp: upstreamProber(cfg.upstreamPcp, cfg.wans) },
  );
  process.stdout.write(formatChecks(checks));
  if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
}
