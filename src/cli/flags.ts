// The command line's shared flags: integers, protocols, the router settings
// serve and doctor share, the log and metrics settings, the state directory.

import { ConfigError, type Config } from '../config.js';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { protocolByName } from '../net/ipproto.js';

export function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${name}: '${v}' is not a whole number`);
  return n;
}

/** `--proto udp|tcp`, required. */
export function protoFlag(v: string | undefined): number {
  const protocol = v === undefined ? undefined : protocolByName(v);
  if (protocol === undefined) throw new ConfigError('--proto udp|tcp is required');
  return protocol;
}

/** The flags that name the router's parts: `serve` runs with them, `doctor` checks them. */
export const ROUTER_OPTIONS = {
  lan: { type: 'string', multiple: true },
  wan: { type: 'string', multiple: true },
  'external-ip': { type: 'string' },
  'upstream-pcp': { type: 'string' },
  'no-nat44': { type: 'boolean' },
  'lan-route': { type: 'string', multiple: true },
  config: { type: 'string' },
  'nft-table': { type: 'string' },
  'nft-embed': { type: 'boolean' },
} as const;

export function routerFlags(values: { lan?: string[]; wan?: string[]; 'external-ip'?: string; 'upstream-pcp'?: string; 'no-nat44'?: boolean; 'lan-route'?: string[]; 'nft-table'?: string; 'nft-embed'?: boolean }) {
  return { lan: values.lan, wan: values.wan, externalIp: values['external-ip'], upstreamPcp: values['upstream-pcp'], nat44: values['no-nat44'] ? false : undefined, lanRoutes: values['lan-route'], nft: { table: values['nft-table'], embed: values['nft-embed'] } };
}

/** --metrics, --log-level, --log-format as config keys (a bad level or format is refused here, with its flag's name). */
export function logFlags(values: { metrics?: string; 'log-level'?: string; 'log-format'?: string }): Partial<Pick<Config, 'metrics' | 'logLevel' | 'logFormat'>> {
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`--log-level: '${level}' is not one of ${LOG_LEVELS.join(', ')}`);
  const format = values['log-format'];
  if (format !== undefined && format !== 'json' && format !== 'pretty') throw new ConfigError(`--log-format: '${format}' is not one of json, pretty`);
  return { metrics: values.metrics, logLevel: level as LogLevel | undefined, logFormat: format };
}

export const stateDirOption = { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } as const;
