// The daemon's one cleanup stack: newest first, every step run even when one
// fails, and every failure said (which step broke a stop is what the admin
// needs), with stop() still failing on the first.

import t from 'tap';
import { Teardown } from '../src/daemon/teardown.js';
import { memoryLogger } from './helpers/memory-logger.js';

function stack() {
  const log = memoryLogger();
  const ran: string[] = [];
  const td = new Teardown(log);
  td.push(() => void ran.push('store'));
  td.push(async () => {
    ran.push('firewall');
    throw new Error('firewall would not stop');
  });
  td.push(() => void ran.push('admin'));
  td.push(() => {
    ran.push('upstream');
    throw new Error('upstream socket already closed');
  });
  return { log, ran, td };
}

t.test('stop: every step runs newest first, each failure is logged, the first is thrown', async (t) => {
  const { log, ran, td } = stack();
  await t.rejects(td.unwind('stop'), /upstream socket already closed/);
  t.same(ran, ['upstream', 'admin', 'firewall', 'store']);
  t.match(
    log.lines.filter((l) => l.event === 'cleanup-failed'),
    [
      { level: 'error', why: 'stop', error: 'upstream socket already closed' },
      { level: 'error', why: 'stop', error: 'firewall would not stop' },
    ],
  );
  t.equal(log.lines.filter((l) => l.event === 'cleanup-failed').length, 2);
});

t.test('a failed start: the same steps run and are logged, nothing thrown (the start\'s error matters)', async (t) => {
  const { log, ran, td } = stack();
  await td.unwind('failed start');
  t.same(ran, ['upstream', 'admin', 'firewall', 'store']);
  t.equal(log.lines.filter((l) => l.event === 'cleanup-failed' && l.why === 'failed start').length, 2);
});

t.test('the stack is empty after unwinding: a second stop does nothing', async (t) => {
  const { ran, td } = stack();
  await td.unwind('stop').catch(() => undefined);
  await td.unwind('stop');
  t.equal(ran.length, 4);
});
