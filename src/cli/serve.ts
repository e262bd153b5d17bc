// portcullis serve: the daemon in the foreground, until a signal.

import { USAGE } from './usage.js';
import { ROUTER_OPTIONS, intFlag, logFlags, routerFlags } from './flags.js';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, resolveConfig, type Config } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../log.js';

export async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...ROUTER_OPTIONS,
      'state-dir': { type: 'string' },
      policy: { type: 'string' },
      backend: { type: 'string' },
      port: { type: 'string' },
      'min-lifetime': { type: 'string' },
      'max-lifetime': { type: 'string' },
      'no-announce': { type: 'boolean' },
      'no-upnp': { type: 'boolean' },
      'upnp-port': { type: 'string' },
      'flush-on-exit': { type: 'boolean' },
      'dhcp-leases': { type: 'string' },
      metrics: { type: 'string' },
      admin: { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
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
  const cfg: Config = resolveConfig(file, {
    ...routerFlags(values),
    ...logFlags(values),
    stateDir: values['state-dir'],
    policy: values.policy,
    backend: values.backend as 'nft' | 'memory' | undefined,
    port: intFlag('port', values.port),
    announce: values['no-announce'] ? false : undefined,
    upnp: { enabled: values['no-upnp'] ? false : undefined, httpPort: intFlag('upnp-port', values['upnp-port']) },
    flushOnExit: values['flush-on-exit'] ? true : undefined,
    dhcpLeases: values['dhcp-leases'],
    admin: { listen: values.admin },
    lifetime: Object.fromEntries(Object.entries(lifetime).filter(([, v]) => v !== undefined)) as { min: number; max: number },
  });
  const log = createLogger({ level: cfg.logLevel, format: cfg.logFormat });
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
  process.on('SIGHUP', () => {
    log.info({ event: 'signal', signal: 'SIGHUP' });
    daemon.reloadPolicy().catch((err: unknown) => {
      // The running policy stays; the admin reads why in the log.
      log.error({ event: 'policy-reload-refused', error: (err as Error).message });
    });
  });
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
