// prefixContains and isLinkLocal keep the bytes of the addresses they
// compare (src/net/address.ts): the answers must not change with what is
// kept, nor with what a caller does to bytes it was handed.

import t from 'tap';
import { addressBytes, isLinkLocal, mustParseIp, parsePrefix, prefixContains, type Prefix } from '../src/net/address.js';

const LAN = parsePrefix('2001:db8:77::/64') as Prefix;

t.test('the same answers across more addresses than are kept', async (t) => {
  const inside = Array.from({ length: 10_000 }, (_, i) => mustParseIp(`2001:db8:77::${i.toString(16)}:1`));
  const outside = Array.from({ length: 10_000 }, (_, i) => mustParseIp(`2001:db8:78::${i.toString(16)}`));
  for (let round = 0; round < 2; round++) {
    t.ok(inside.every((a) => prefixContains(LAN, a)), `round ${round + 1}: every address of the /64 is in it`);
    t.ok(outside.every((a) => !prefixContains(LAN, a)), `round ${round + 1}: none of the next /64 is`);
  }
  t.ok(isLinkLocal(mustParseIp('fe80::1')) && !isLinkLocal(mustParseIp('2001:db8:77::1')));
});

t.test('bytes handed out are the caller\'s own', async (t) => {
  const a = mustParseIp('2001:db8:77::5');
  t.ok(prefixContains(LAN, a));
  addressBytes(a).fill(0xff);
  addressBytes(LAN.address).fill(0);
  t.ok(prefixContains(LAN, a), 'still inside: the kept bytes were not the ones changed');
  t.notOk(prefixContains(LAN, mustParseIp('2001:db8:79::5')));
});
