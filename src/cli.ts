#!/usr/bin/env node
// The portcullis command: hands each command to its room in src/cli/.

// Each command's room is loaded when that command runs: a daemon's start
// (serve) does not compile the client commands, nor they the daemon.

import { ConfigError } from './config.js';
import { packageVersion } from './version.js';
import { USAGE } from './cli/usage.js';

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === '--version') {
    process.stdout.write(`portcullis ${packageVersion()}\n`);
    return;
  }
  if (cmd === 'serve') return (await import('./cli/serve.js')).serve(rest);
  if (cmd === 'pcp') return (await import('./cli/pcp.js')).pcp(rest);
  if (cmd === 'policy') return (await import('./cli/policy.js')).policyCommand(rest);
  if (cmd === 'ls' || cmd === 'list') return (await import('./cli/steer.js')).ls(rest);
  if (cmd === 'status') return (await import('./cli/steer.js')).status(rest);
  if (cmd === 'rm') return (await import('./cli/steer.js')).rm(rest);
  if (cmd === 'doctor') return (await import('./cli/doctor.js')).doctor(rest);
  if (cmd === 'admin-password') return (await import('./cli/admin-password.js')).adminPassword(rest);
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
