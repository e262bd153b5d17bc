// prefixContains and isLinkLocal keep the bytes of the addresses they
// compare (src/net/address.ts): the answers must not change with what is
// kept, nor with what a caller does to bytes it was handed. parseIp
// remembers what it parsed lately: the same goes for it.

import t from 'tap';
import { addressBytes, isLinkLocal, mustParseIp, parseIp, parsePrefix, prefixContains, toWire16, type Prefix } from '../src/net/address.js';

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

t.test('parseIp answers the same whether it remembers the text or not', async (t) => {
  // More texts than are remembered, each in two spellings, then an invalid
  // one beside it; twice over, so the second round meets emptied and full memos.
  const texts = Array.from({ length: 9_000 }, (_, i) => (i + 1).toString(16));
  for (let round = 0; round < 2; round++) {
    let wrong = 0;
    for (const h of texts) {
      if (parseIp(`2001:DB8:0:0::${h.toUpperCase()}`) !== `2001:db8::${h}`) wrong++;
      if (parseIp(`::ffff:10.0.${(parseInt(h, 16) >> 8) & 255}.${parseInt(h, 16) & 255}`) !== `10.0.${(parseInt(h, 16) >> 8) & 255}.${parseInt(h, 16) & 255}`) wrong++;
      if (parseIp(`2001:db8::${h}::1`) !== undefined) wrong++;
    }
    t.equal(wrong, 0, `round ${round + 1}: every text parsed to its canonical form, every bad one refused`);
  }
  t.equal(parseIp('fe80::1%lan0'), 'fe80::1', 'a zone is dropped');
  t.equal(parseIp('fe80::1%lan0'), 'fe80::1', 'and again from memory');
  t.equal(parseIp(`${'1'.repeat(70)}`), undefined, 'a long text is no address');
});

t.test('toWire16 hands out its own copy each time, the same bytes whatever it remembers', async (t) => {
  const a = mustParseIp('2001:db8:77::9');
  const first = toWire16(a);
  first.fill(0xee);
  t.equal(toWire16(a).toString('hex'), '20010db8007700000000000000000009', 'a caller writing into its copy changes nothing for the next');
  let wrong = 0;
  for (let round = 0; round < 2; round++) {
    for (let i = 1; i <= 9_000; i++) {
      if (toWire16(mustParseIp(`2001:db8::${i.toString(16)}`)).readUInt16BE(14) !== i) wrong++;
      if (toWire16(mustParseIp(`10.0.${i >> 8}.${i & 255}`)).readUInt16BE(14) !== i) wrong++;
    }
  }
  t.equal(wrong, 0, 'every address encoded right across more than are remembered');
});
