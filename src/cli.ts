#!/usr/bin/env node
// portcullis command line.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfigFile, resolveConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { jsonLogger } from './log.js';

const USAGE = `usage: portcullis serve --lan IFACE [--lan IFACE ...] --wan IFACE [options]

Serves PCP (RFC 6887) and NAT-PMP (RFC 6886) on the LAN interfaces' addresses
and installs the mappings it grants in the firewall.

options:
  --lan IFACE            LAN interface to serve (repeatable)
  --wan IFACE            WAN interface (its first IPv4 address is the external address)
  --external-ip ADDR     external IPv4 address, instead of the WAN interface's
  --state-dir DIR        where state is kept
  --config FILE          JSON configuration file (flags override it)
  --policy FILE          admin policy file
  --backend nft|memory   firewall backend
  --nft-table NAME       nftables table (default portcullis, created and owned by portcullis)
  --nft-embed            add portcullis' chains and sets to the existing table --nft-table
                         instead (e.g. --nft-table fw4 --nft-embed); the admin jumps to them
  --port N               UDP port for PCP/NAT-PMP (default 5351; for tests)
  --min-lifetime S       shortest lifetime granted (default 120)
  --max-lifetime S       longest lifetime granted (default 86400)
  --no-announce          do not multicast announcements at start
  -h, --help             this text
  --version              print the version
`;

function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${name}: '${v}' is not a whole number`);
  return n;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      lan: { type: 'string', multiple: true },
      wan: { type: 'string' },
      'external-ip': { type: 'string' },
      'state-dir': { type: 'string' },
      config: { type: 'string' },
      policy: { type: 'string' },
      backend: { type: 'string' },
      port: { type: 'string' },
      'min-lifetime': { type: 'string' },
      'max-lifetime': { type: 'string' },
      'no-announce': { type: 'boolean' },
      'nft-table': { type: 'string' },
      'nft-embed': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.backend !== undefined && values.backend !== 'nft' && values.backend !== 'memory') {
    throw new ConfigError(`--backend: '${values.backend}' is not one of nft, memory`);
  }
  const file = values.config ? loadConfigFile(values.config) : {};
  const lifetime = { min: intFlag('min-lifetime', values['min-lifetime']), max: intFlag('max-lifetime', values['max-lifetime']) };
  const cfg = resolveConfig(file, {
    lan: values.lan,
    wan: values.wan,
    externalIp: values['external-ip'],
    stateDir: values['state-dir'],
    policy: values.policy,
    backend: values.backend as 'nft' | 'memory' | undefined,
    port: intFlag('port', values.port),
    announce: values['no-announce'] ? false : undefined,
    nft: { table: values['nft-table'], embed: values['nft-embed'] },
    lifetime: Object.fromEntries(Object.entries(lifetime).filter(([, v]) => v !== undefined)) as { min: number; max: number },
  });
  if (cfg.policy) {
    throw new ConfigError(`--policy ${cfg.policy}: policy files are not supported yet; without --policy the built-in default policy applies`);
  }
  const log = jsonLogger();
  const daemon = await startDaemon(cfg, log);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'signal', signal });
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ event: 'stop-failed', error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === '--version') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`portcullis ${pkg.version}\n`);
    return;
  }
  if (cmd === 'serve') return serve(rest);
  process.stdout.write(USAGE);
  if (cmd !== '-h' && cmd !== '--help') process.exitCode = 2;
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`portcullis: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.stderr.write(`portcullis: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
