#!/usr/bin/env node
// The portcullis command: hands each command to its room in src/cli/.

import { ConfigError } from './config.js';
import { packageVersion } from './version.js';
import { USAGE } from './cli/usage.js';
import { adminPassword } from './cli/admin-password.js';
import { pcp } from './cli/pcp.js';
import { policyCommand } from './cli/policy.js';
import { doctor, serve } from './cli/serve.js';
import { ls, rm, status } from './cli/steer.js';



async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === '--version') {
    process.stdout.write(`portcullis ${packageVersion()}\n`);
    return;
  }
  if (cmd === 'serve') return serve(rest);
  if (cmd === 'pcp') return pcp(rest);
  if (cmd === 'policy') return policyCommand(rest);
  if (cmd === 'ls' || cmd === 'list') return ls(rest);
  if (cmd === 'status') return status(rest);
  if (cmd === 'rm') return rm(rest);
  if (cmd === 'doctor') return doctor(rest);
  if (cmd === 'admin-password') return adminPassword(rest);
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
