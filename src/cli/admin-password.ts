// portcullis admin-password: the `admin.passwordHash` config line for a
// password that never appears on a command line (`ps` and the shell's
// history show arguments). On a terminal it is typed twice without echo;
// otherwise it is the first line of standard input (a password manager's
// pipe, a provisioning script). Bounds: MAX_PASSWORD_BYTES read at most,
// MIN_PASSWORD_CHARS at least, valid UTF-8 without control characters (what
// a browser's password field can send). The hash is the admin server's own
// (server/admin/auth.ts hashPassword), so what it prints is what login checks.

import { parseArgs } from 'node:util';
import { ConfigError } from '../config.js';
import { hashPassword } from '../server/admin/auth.js';

export const MAX_PASSWORD_BYTES = 1024;
export const MIN_PASSWORD_CHARS = 8;

const HELP = `usage: portcullis admin-password
       printf '%s\\n' "$PASSWORD" | portcullis admin-password

Prints the "passwordHash" line for the "admin" object of the config file, so
the admin page can be logged into with a password as well as the token. On a
terminal the password is asked twice and not shown; otherwise it is the first
line of standard input. Never give it as an argument: ps and the shell's
history would show it. At least ${MIN_PASSWORD_CHARS} characters, at most ${MAX_PASSWORD_BYTES} bytes.
Restart the daemon after changing the config file.
`;

/** Why a password is refused, or undefined when it will do. */
export function passwordProblem(password: string): string | undefined {
  if (password.length === 0) return 'the password is empty: nothing was made';
  if (/[\u0000-\u001f\u007f]/.test(password)) return 'the password holds a control character (a tab, an escape, …): use printable characters only';
  if ([...password].length < MIN_PASSWORD_CHARS) return `the password is too short: at least ${MIN_PASSWORD_CHARS} characters`;
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return `the password is longer than ${MAX_PASSWORD_BYTES} bytes`;
  return undefined;
}

export async function adminPassword(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (positionals.length > 0) throw new ConfigError('admin-password takes no arguments: type the password when asked, or give it on standard input (an argument shows in ps and the shell\'s history)');
  const stdin = process.stdin;
  let password: string;
  if (stdin.isTTY) {
    password = await fromTerminal('New admin password: ');
    const problem = passwordProblem(password);
    if (problem) throw new ConfigError(problem);
    if ((await fromTerminal('Again: ')) !== password) throw new ConfigError('the two passwords differ: nothing was made');
  } else {
    password = firstLine(await readBounded(stdin, MAX_PASSWORD_BYTES + 2));
    const problem = passwordProblem(password);
    if (problem) throw new ConfigError(problem);
  }
  process.stdout.write(`"passwordHash": "${await hashPassword(password)}"\n`);
  process.stderr.write('Put this line in the "admin" object of the config file (e.g. /etc/portcullis/config.json), then restart portcullis.\n');
}

/** The first line of what was read, without its line end; over the bound or not UTF-8: refused. */
function firstLine(bytes: Buffer): string {
  const nl = bytes.indexOf(0x0a);
  const line = nl < 0 ? bytes : bytes.subarray(0, nl);
  const bare = line.at(-1) === 0x0d ? line.subarray(0, -1) : line;
  if (bare.length > MAX_PASSWORD_BYTES) throw new ConfigError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  const text = bare.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(bare)) throw new ConfigError('the password is not valid UTF-8');
  return text;
}

/** Standard input up to its first newline or `max` bytes, whichever comes first; the rest is not read. */
function readBounded(stream: NodeJS.ReadStream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const done = () => {
      stream.off('data', onData);
      stream.off('end', done);
      stream.off('error', reject);
      stream.pause();
      resolve(Buffer.concat(parts).subarray(0, max));
    };
    const onData = (b: Buffer) => {
      parts.push(b);
      size += b.length;
      if (size >= max || b.includes(0x0a)) done();
    };
    stream.on('data', onData);
    stream.on('end', done);
    stream.on('error', reject);
  });
}

/**
 * One line typed on the terminal, not echoed: Enter ends it, Backspace
 * takes back a character, Ctrl-U the whole line, Ctrl-C or Ctrl-D on an
 * empty line gives up. More than MAX_PASSWORD_BYTES is refused as typed.
 */
function fromTerminal(prompt: string): Promise<string> {
  const stdin = process.stdin;
  // Raw before the prompt: nothing typed after it is echoed by the terminal.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || (ch === '\u0004' && typed === '')) return finish(new ConfigError('no password given: nothing was made'));
        if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch === '\u0015') typed = '';
        else typed += ch;
        if (Buffer.byteLength(typed, 'utf8') > MAX_PASSWORD_BYTES) return finish(new ConfigError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`));
      }
    };
    stdin.on('data', onData);
  });
}
