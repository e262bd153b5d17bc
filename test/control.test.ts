// The admin's control socket: one JSON line in, one out, with hostile and
// oversized input refused, and the CLI's end of it.

import t from 'tap';
import { createConnection } from 'node:net';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from './helpers/memory-logger.js';
import { ControlServer, controlRequest, controlSocketPath } from '../src/server/control-socket.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-control-'));
const path = controlSocketPath(dir);
const asked: string[] = [];
const server = new ControlServer(
  path,
  async (req) => {
    asked.push(req.op);
    if (req.op === 'reload') throw new Error('policy.yaml:3: /rules/0: missing required key \'action\'');
    return { op: req.op };
  },
  memoryLogger(),
);
t.before(() => server.start());
t.teardown(() => server.stop());

/** Sends raw bytes (then `later` chunks, 30 ms apart), returns what came back before the server closed. */
function raw(bytes: string | Buffer, at = path, later: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(at);
    let out = '';
    const timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', () => undefined);
    s.write(bytes);
    later.forEach((chunk, i) => setTimeout(() => s.write(chunk), 30 * (i + 1)));
  });
}

t.test('the socket is for root only', async (t) => {
  t.equal(statSync(path).mode & 0o777, 0o600);
});

t.test('a request gets its answer; a failing one its error', async (t) => {
  t.same(await controlRequest(path, { op: 'list' }), { ok: true, result: { op: 'list' } });
  t.same(await controlRequest(path, { op: 'reload' }), { ok: false, error: "policy.yaml:3: /rules/0: missing required key 'action'" });
});

t.test('status and remove reach the handler with their fields', async (t) => {
  t.same(await controlRequest(path, { op: 'status' }), { ok: true, result: { op: 'status' } });
  t.same(await controlRequest(path, { op: 'remove', id: 7 }), { ok: true, result: { op: 'remove' } });
  t.same(asked.slice(-2), ['status', 'remove']);
});

t.test('hostile input is refused without reaching the handler', async (t) => {
  const before = asked.length;
  t.same(JSON.parse(await raw('not json\n')), { ok: false, error: 'not JSON' });
  t.same(JSON.parse(await raw('{"op":"rm -rf /"}\n')), { ok: false, error: 'unknown op' });
  t.same(JSON.parse(await raw('null\n')), { ok: false, error: 'unknown op' });
  t.same(JSON.parse(await raw('"status"\n')), { ok: false, error: 'unknown op' }, 'a string, not a request');
  t.same(JSON.parse(await raw(Buffer.alloc(10_000, 0x41))), { ok: false, error: 'request too long' }, 'a line over 4 KiB');
  t.same(JSON.parse(await raw(Buffer.from([0xff, 0xfe, 0x00, 0x0a]))), { ok: false, error: 'not JSON' });
  t.equal(asked.length, before, 'the handler saw none of it');
});

t.test('the CLI says plainly when no daemon listens', async (t) => {
  await t.rejects(controlRequest(join(dir, 'nothing.sock'), { op: 'list' }), /no daemon is listening at .*nothing\.sock/);
});

t.test('one request per connection, handled once, however the rest arrives', async (t) => {
  const slowPath = join(dir, 'slow.sock');
  let calls = 0;
  const slow = new ControlServer(
    slowPath,
    async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 300));
      return { calls };
    },
    memoryLogger(),
  );
  await slow.start();
  t.teardown(() => slow.stop());
  // The request, then more chunks while its handler runs: a second line,
  // blanks, half a line. None of it is another request.
  const answer = await raw('{"op":"reload"}\n', slowPath, ['{"op":"reload"}\n', ' ', '\n', '{"op":']);
  t.same(JSON.parse(answer), { ok: true, result: { calls: 1 } }, 'one reply');
  t.equal(calls, 1, 'the handler ran once');
});

t.test('a second server never takes over a socket someone answers on', async (t) => {
  const rival = new ControlServer(path, async () => 'rival', memoryLogger());
  await t.rejects(rival.start(), /another daemon is listening/);
  t.same(await controlRequest(path, { op: 'list' }), { ok: true, result: { op: 'list' } }, 'the first still answers');
  // A file nobody answers on (left by a daemon that died) is taken over.
  const stalePath = join(dir, 'stale.sock');
  writeFileSync(stalePath, '');
  const next = new ControlServer(stalePath, async () => 'new', memoryLogger());
  await next.start();
  t.teardown(() => next.stop());
  t.same(await controlRequest(stalePath, { op: 'list' }), { ok: true, result: 'new' });
});
