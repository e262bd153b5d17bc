// ctnetlink in process: the codec against bytes built here independently
// (host byte order of this little-endian machine for netlink's own fields,
// network order for addresses and ports), hostile kernel answers, the
// request/answer matching over a fake socket, and the flusher's choice of
// path and fallback. The real kernel is lab-conntrack.test.ts'.

import t from 'tap';
import fc from 'fast-check';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeMessages, encodeDelete, encodeDump, type Flow } from '../src/firewall/ctnetlink-codec.js';
import { Ctnetlink, MAX_FLOWS, type NetlinkSocket } from '../src/firewall/ctnetlink.js';
import { filterFor } from '../src/firewall/conntrack-netlink.js';
import { ConntrackFlusher, type FlowSelector } from '../src/firewall/conntrack.js';
import { mustParseIp } from '../src/net/address.js';
import { memoryLogger } from './helpers/memory-logger.js';

// ---- an independent byte builder: what the kernel sends ----------------------

const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
function nla(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + payload.length, 0);
  h.writeUInt16LE(type, 2);
  return pad(Buffer.concat([h, payload]));
}
const nest = (type: number, ...kids: Buffer[]) => nla(type | 0x8000, Buffer.concat(kids));
const ip4 = (text: string) => Buffer.from(text.split('.').map(Number));
const port = (p: number) => Buffer.from([p >> 8, p & 0xff]);
function nlmsg(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(4321, 12);
  return Buffer.concat([h, pad(payload)]);
}
/** CTA_TUPLE_* { CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SRC_PORT, DST_PORT } }. */
const tuple = (type: number, proto: number, s: string, d: string, sp: number, dp: number) =>
  nest(type, nest(1, nla(1, ip4(s)), nla(2, ip4(d))), nest(2, nla(1, Buffer.from([proto])), nla(2, port(sp)), nla(3, port(dp))));
/** A dump's message for a flow: IPCTNL_MSG_CT_NEW, NLM_F_MULTI, nfgenmsg AF_INET, the tuples, status, id. */
function kernelFlow(seq: number, f: Flow, extra: Buffer[] = []): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(f.id ?? 0);
  return nlmsg(0x100, 2, seq, Buffer.concat([
    Buffer.from([2, 0, 0, 0]),
    tuple(1, f.protocol, f.orig.src, f.orig.dst, f.orig.srcPort, f.orig.dstPort),
    tuple(2, f.protocol, f.reply.src, f.reply.dst, f.reply.srcPort, f.reply.dstPort),
    nla(3, Buffer.from([0, 0, 0, 8])),
    ...extra,
    nla(12, id),
  ]));
}
const done = (seq: number, errno = 0) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(-errno);
  return nlmsg(3, 2, seq, b);
};
const ack = (seq: number, errno = 0) => {
  const b = Buffer.alloc(20);
  b.writeInt32LE(-errno);
  return nlmsg(2, 0x100, seq, b);
};

const ip = mustParseIp;
/** A UDP flow from the LAN host's port, masqueraded to 198.51.100.1:natPort. */
const udp = (sport: number, natPort = sport, id = sport): Flow => ({
  protocol: 17,
  orig: { src: ip('192.168.77.10'), dst: ip('198.51.100.2'), srcPort: sport, dstPort: 53 },
  reply: { src: ip('198.51.100.2'), dst: ip('198.51.100.1'), srcPort: 53, dstPort: natPort },
  id,
});

// ---- the codec -----------------------------------------------------------------

t.test('a filtered dump request, byte for byte', async (t) => {
  const b = encodeDump(7, { direction: 'reply', family: 4, protocol: 17, dst: ip('198.51.100.1'), dstPort: 4444 });
  const want = nlmsg(0x101, 0x301, 7, Buffer.concat([
    Buffer.from([2, 0, 0, 0]),
    nest(2, nest(1, nla(2, ip4('198.51.100.1'))), nest(2, nla(1, Buffer.from([17])), nla(3, port(4444)))),
    // CTA_FILTER { ORIG_FLAGS 0, REPLY_FLAGS IP_DST|PROTO_NUM|PROTO_DST_PORT = 0b101010 }
    nest(25, nla(1, Buffer.from([0, 0, 0, 0])), nla(2, Buffer.from([0x2a, 0, 0, 0]))),
  ]));
  want.writeUInt32LE(0, 12); // the request's port id is 0
  t.equal(b.toString('hex'), want.toString('hex'));
  const proto = encodeDump(8, { direction: 'orig', family: 4, protocol: 6 });
  t.equal(proto.readUInt32LE(0), proto.length);
  t.ok(proto.includes(nest(25, nla(1, Buffer.from([8, 0, 0, 0])), nla(2, Buffer.alloc(4)))), 'protocol only: ORIG_FLAGS PROTO_NUM');
});

t.test('a deletion names the original tuple, the id and the zone', async (t) => {
  const f = { ...udp(4000, 4444, 0xdeadbeef), zone: 3 };
  const b = encodeDelete(9, f);
  const id = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  const want = nlmsg(0x102, 0x5, 9, Buffer.concat([Buffer.from([2, 0, 0, 0]), tuple(1 | 0x8000, 17, '192.168.77.10', '198.51.100.2', 4000, 53), nla(12, id), nla(18, port(3))]));
  want.writeUInt32LE(0, 12);
  t.equal(b.toString('hex'), want.toString('hex'));
});

t.test("the kernel's flows decode to what was built", async (t) => {
  const a = udp(4000, 4444, 77);
  const zone = nla(18, port(5));
  const buf = Buffer.concat([kernelFlow(5, a, [zone, nla(99, Buffer.from('unknown attribute'))]), kernelFlow(5, udp(4001)), done(5)]);
  const d = decodeMessages(buf);
  t.ok(d.ok);
  t.same(d.answers, [{ kind: 'flow', seq: 5, flow: { ...a, zone: 5 } }, { kind: 'flow', seq: 5, flow: udp(4001) }, { kind: 'done', seq: 5, errno: 0 }]);
  t.same(decodeMessages(ack(6, 1)).answers, [{ kind: 'ack', seq: 6, errno: 1 }], 'EPERM');
});

t.test('flows that are not IPv4 with ports are skipped, not misread', async (t) => {
  const icmp = nlmsg(0x100, 2, 1, Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(1, nest(1, nla(1, ip4('192.168.77.10')), nla(2, ip4('198.51.100.2'))), nest(2, nla(1, Buffer.from([1])), nla(4, port(1))))]));
  const v6 = nlmsg(0x100, 2, 1, Buffer.concat([Buffer.from([10, 0, 0, 0]), tuple(1, 17, '1.2.3.4', '5.6.7.8', 1, 2)]));
  const shortAddr = nlmsg(0x100, 2, 1, Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(1, nest(1, nla(1, Buffer.from([1, 2, 3])), nla(2, ip4('5.6.7.8'))), nest(2, nla(1, Buffer.from([17])), nla(2, port(1)), nla(3, port(2)))), tuple(2, 17, '5.6.7.8', '1.2.3.4', 2, 1)]));
  const d = decodeMessages(Buffer.concat([icmp, v6, shortAddr, kernelFlow(1, udp(9))]));
  t.same(d.answers.map((a) => a.kind), ['other', 'other', 'other', 'flow']);
});

t.test('hostile answers: every truncation, lying lengths, random bytes: errors as values, never a throw', async (t) => {
  const whole = Buffer.concat([kernelFlow(1, udp(4000)), kernelFlow(1, udp(4001)), done(1)]);
  const ends = [0, kernelFlow(1, udp(4000)).length, 2 * kernelFlow(1, udp(4000)).length];
  for (let n = 0; n < whole.length; n++) {
    const d = decodeMessages(whole.subarray(0, n));
    t.equal(d.ok, ends.includes(n), `a ${n}-octet prefix of a ${whole.length}-octet answer is whole only at a message's end`);
    t.ok(d.answers.length <= 2 && d.answers.every((a) => a.kind === 'flow'), `prefix ${n}: only whole messages before the cut`);
  }
  const lying = Buffer.from(kernelFlow(1, udp(4000)));
  lying.writeUInt32LE(lying.length + 4, 0);
  t.match(decodeMessages(lying), { ok: false, answers: [] }, 'a message longer than the datagram');
  const tiny = Buffer.from(kernelFlow(1, udp(4000)));
  tiny.writeUInt32LE(8, 0);
  t.match(decodeMessages(tiny), { ok: false }, 'a message shorter than its header');
  // An attribute that claims more than its container: the flow is not read.
  const attrLie = Buffer.from(kernelFlow(1, udp(4000)));
  attrLie.writeUInt16LE(0xfff0, 20);
  t.same(decodeMessages(attrLie).answers, [{ kind: 'other', seq: 1 }]);
  t.match(decodeMessages(nlmsg(0x1000, 0, 1, Buffer.alloc(4))), { ok: false, detail: /not ctnetlink/ });
  t.match(decodeMessages(Buffer.concat(Array.from({ length: 10 }, () => done(1))), 4), { ok: false, answers: { length: 4 } }, 'a bound on messages per datagram');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(whole.length), (noise, at) => {
      decodeMessages(Buffer.from(noise));
      const mixed = Buffer.from(whole);
      Buffer.from(noise).copy(mixed, at);
      decodeMessages(mixed);
    }),
    { numRuns: 3000, seed: 16 },
  );
});

t.test('the filter: narrowed when the selectors share an address, else the protocol', async (t) => {
  const s = (by: FlowSelector['by'], address: string, p: number): FlowSelector => ({ by, protocol: 17, address: ip(address), port: p });
  t.same(filterFor(4, 17, [s('source', '192.168.77.10', 4000)]), { direction: 'orig', family: 4, protocol: 17, src: '192.168.77.10', srcPort: 4000 });
  t.same(filterFor(4, 17, [s('source', '192.168.77.10', 4000), s('source', '192.168.77.10', 4001)]), { direction: 'orig', family: 4, protocol: 17, src: '192.168.77.10' });
  t.same(filterFor(4, 17, [s('translated-to', '198.51.100.1', 4444)]), { direction: 'reply', family: 4, protocol: 17, dst: '198.51.100.1', dstPort: 4444 });
  t.same(filterFor(4, 17, [s('source', '192.168.77.10', 4000), s('translated-to', '198.51.100.1', 4000)]), { direction: 'orig', family: 4, protocol: 17 });
  t.same(filterFor(4, 17, [s('source', '192.168.77.10', 4000), s('source', '192.168.77.11', 4000)]), { direction: 'orig', family: 4, protocol: 17 });
});

// ---- IPv6 tuples ---------------------------------------------------------------

/** The 16 octets of an IPv6 address, written out here (no shared parser). */
function ip6(text: string): Buffer {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groups = (x: string | undefined) => (x ? x.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const tl = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill(0), ...tl];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}
/** CTA_TUPLE_* with CTA_IP_V6_SRC (3) and CTA_IP_V6_DST (4). */
const tuple6 = (type: number, proto: number, s: string, d: string, sp: number, dp: number, addr = ip6) =>
  nest(type, nest(1, nla(3, addr(s)), nla(4, addr(d))), nest(2, nla(1, Buffer.from([proto])), nla(2, port(sp)), nla(3, port(dp))));
/** An inbound TCP flow from the WAN host to a LAN host's IPv6 pinhole. */
const inbound6 = (id = 7): Flow => ({
  protocol: 6,
  orig: { src: ip('2001:db8:ff::2'), dst: ip('2001:db8:77::2'), srcPort: 45061, dstPort: 40201 },
  reply: { src: ip('2001:db8:77::2'), dst: ip('2001:db8:ff::2'), srcPort: 40201, dstPort: 45061 },
  id,
});
function kernelFlow6(seq: number, f: Flow, family = 10, addr = ip6): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(f.id ?? 0);
  return nlmsg(0x100, 2, seq, Buffer.concat([
    Buffer.from([family, 0, 0, 0]),
    tuple6(1, f.protocol, f.orig.src, f.orig.dst, f.orig.srcPort, f.orig.dstPort, addr),
    tuple6(2, f.protocol, f.reply.src, f.reply.dst, f.reply.srcPort, f.reply.dstPort, addr),
    nla(12, id),
  ]));
}

t.test('IPv6: a dump filtered on the reply\'s source, byte for byte, in family AF_INET6', async (t) => {
  const b = encodeDump(11, { direction: 'reply', family: 6, protocol: 6, src: ip('2001:db8:77::2'), srcPort: 40201 });
  const want = nlmsg(0x101, 0x301, 11, Buffer.concat([
    Buffer.from([10, 0, 0, 0]),
    nest(2, nest(1, nla(3, ip6('2001:db8:77::2'))), nest(2, nla(1, Buffer.from([6])), nla(2, port(40201)))),
    // REPLY_FLAGS IP_SRC|PROTO_NUM|PROTO_SRC_PORT = 0b11001
    nest(25, nla(1, Buffer.alloc(4)), nla(2, Buffer.from([0x19, 0, 0, 0]))),
  ]));
  want.writeUInt32LE(0, 12);
  t.equal(b.toString('hex'), want.toString('hex'));
  t.equal(encodeDump(12, { direction: 'orig', family: 6, protocol: 17 })[16], 10, 'a protocol-wide dump of IPv6 flows says AF_INET6');
  t.throws(() => encodeDump(13, { direction: 'reply', family: 4, protocol: 6, src: ip('2001:db8:77::2') }), /family/, 'an address of the other family is a bug, not a request');
});

t.test('IPv6: a deletion names the 16-octet original tuple in family AF_INET6', async (t) => {
  const f = inbound6(0xcafe);
  const id = Buffer.alloc(4);
  id.writeUInt32BE(0xcafe);
  const want = nlmsg(0x102, 0x5, 3, Buffer.concat([Buffer.from([10, 0, 0, 0]), tuple6(1 | 0x8000, 6, '2001:db8:ff::2', '2001:db8:77::2', 45061, 40201), nla(12, id)]));
  want.writeUInt32LE(0, 12);
  t.equal(encodeDelete(3, f).toString('hex'), want.toString('hex'));
});

t.test('IPv6: flows decode; every length is checked, and a flow whose addresses are not its family\'s is skipped', async (t) => {
  const d = decodeMessages(Buffer.concat([kernelFlow6(4, inbound6()), done(4)]));
  t.same(d, { ok: true, answers: [{ kind: 'flow', seq: 4, flow: inbound6() }, { kind: 'done', seq: 4, errno: 0 }] });
  const four = (text: string) => ip6(text).subarray(12);
  const seventeen = (text: string) => Buffer.concat([ip6(text), Buffer.from([0])]);
  const mapped = (text: string) => Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), ip6(text).subarray(12)]);
  const skipped = [
    kernelFlow6(4, inbound6(), 10, four), // AF_INET6 with 4-octet addresses
    kernelFlow6(4, inbound6(), 10, seventeen), // one octet too many
    kernelFlow6(4, inbound6(), 10, mapped), // IPv4-mapped: it would read back as IPv4 text
    kernelFlow6(4, inbound6(), 2), // AF_INET with IPv6 attributes
    kernelFlow6(4, inbound6(), 7), // a family that is neither
  ];
  t.same(decodeMessages(Buffer.concat(skipped)).answers.map((a) => a.kind), ['other', 'other', 'other', 'other', 'other']);
  const whole = Buffer.concat([kernelFlow6(1, inbound6()), done(1)]);
  const end = kernelFlow6(1, inbound6()).length;
  for (let n = 0; n < whole.length; n++) {
    const cut = decodeMessages(whole.subarray(0, n));
    t.equal(cut.ok, n === 0 || n === end, `a ${n}-octet prefix is whole only at a message's end`);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(whole.length), (noise, at) => {
      const mixed = Buffer.from(whole);
      Buffer.from(noise).copy(mixed, at);
      for (const a of decodeMessages(mixed).answers) if (a.kind === 'flow') t.ok([a.flow.orig.src, a.flow.reply.src].every((x) => x.includes(':')), 'an IPv6 message yields IPv6 addresses only');
    }),
    { numRuns: 2000, seed: 61 },
  );
});

t.test("the filter for 'destination': the reply's source, in the selectors' family", async (t) => {
  const d = (address: string, p: number): FlowSelector => ({ by: 'destination', protocol: 6, address: ip(address), port: p });
  // IPv6: the port only; the kernel's IPv6 address comparison is inverted (conntrack-netlink.ts).
  t.same(filterFor(6, 6, [d('2001:db8:77::2', 40201)]), { direction: 'reply', family: 6, protocol: 6, srcPort: 40201 });
  t.same(filterFor(6, 6, [d('2001:db8:77::2', 40201), d('2001:db8:77::3', 40201)]), { direction: 'reply', family: 6, protocol: 6, srcPort: 40201 });
  t.same(filterFor(6, 6, [d('2001:db8:77::2', 40201), d('2001:db8:77::2', 40202)]), { direction: 'orig', family: 6, protocol: 6 });
  t.same(filterFor(4, 6, [d('192.168.77.2', 40101), d('192.168.77.2', 40102)]), { direction: 'reply', family: 4, protocol: 6, src: '192.168.77.2' });
  t.same(filterFor(6, 6, [d('2001:db8:77::2', 1), { ...d('2001:db8:77::2', 1), by: 'source' }]), { direction: 'orig', family: 6, protocol: 6 });
});

// ---- a fake kernel behind a fake socket ---------------------------------------

interface FakeKernel {
  socket: NetlinkSocket;
  opened: number;
  /** Each request's type (0x101 dump, 0x102 delete) and seq, in order. */
  requests: { type: number; seq: number; body: Buffer }[];
  flows: Flow[];
}

/**
 * Answers dumps with every flow of the requested protocol (the filter's
 * narrowing is the real kernel's job, lab-conntrack's), `perDatagram` flows a
 * datagram, a stale answer of another seq first; deletions with an ack, or
 * `deleteErrno`. `ignoreFilter`: the probe (source port 0) gets every flow.
 */
function fakeKernel(o: { flows?: Flow[]; perDatagram?: number; deleteErrno?: number; silent?: boolean; ignoreFilter?: boolean; byAddress?: boolean } = {}): FakeKernel {
  const k: FakeKernel = { opened: 0, requests: [], flows: o.flows ?? [], socket: undefined as unknown as NetlinkSocket };
  const inbox: Buffer[] = [];
  k.socket = {
    async send(buf) {
      for (let at = 0; at < buf.length; ) {
        const len = buf.readUInt32LE(at);
        const type = buf.readUInt16LE(at + 4);
        const seq = buf.readUInt32LE(at + 8);
        const body = buf.subarray(at + 16, at + len);
        k.requests.push({ type, seq, body });
        at += len;
        if (o.silent) continue;
        if (type === 0x101) {
          const proto = body[body.indexOf(Buffer.from([5, 0, 1, 0])) + 4];
          const probe = body.includes(nla(2, port(0)));
          let flows = probe && !o.ignoreFilter ? [] : k.flows.filter((f) => f.protocol === proto);
          // byAddress: the kernel's narrowing to the filter's source (orig) or destination (reply) address.
          const orig = (body.readUInt16LE(6) & 0x3fff) === 1;
          const addressOf = (f: Flow) => nla(orig ? 1 : 2, ip4(orig ? f.orig.src : f.reply.dst));
          if (o.byAddress && flows.some((f) => body.includes(addressOf(f)))) flows = flows.filter((f) => body.includes(addressOf(f)));
          inbox.push(kernelFlow(seq - 1, udp(1)));
          const per = o.perDatagram ?? 10;
          for (let i = 0; i < flows.length; i += per) inbox.push(Buffer.concat(flows.slice(i, i + per).map((f) => kernelFlow(seq, f))));
          inbox.push(done(seq));
        } else if (type === 0x102) {
          const id = body.readUInt32BE(body.length - 4);
          if (!o.deleteErrno) k.flows = k.flows.filter((f) => f.id !== id);
          inbox.push(ack(seq, o.deleteErrno ?? 0));
        }
      }
      return true;
    },
    async receive() {
      return inbox.shift();
    },
    close() {
      inbox.length = 0;
    },
  };
  return k;
}
const opener = (k: FakeKernel) => async () => {
  k.opened++;
  return k.socket;
};

t.test('a dump: answers of another request skipped, every datagram read until done', async (t) => {
  const k = fakeKernel({ flows: Array.from({ length: 25 }, (_, i) => udp(5000 + i)) });
  const ct = new Ctnetlink(opener(k));
  const r = await ct.dump({ direction: 'orig', family: 4, protocol: 17 });
  t.ok(r.ok);
  if (r.ok) {
    t.equal(r.value.flows.length, 25, 'three datagrams, a stale flow of seq-1 left out');
    t.ok(r.value.complete);
  }
  t.equal(k.opened, 1);
});

t.test('a kernel that keeps sending: the dump stops at MAX_FLOWS and the socket is replaced', async (t) => {
  const k = fakeKernel({ flows: Array.from({ length: MAX_FLOWS + 50 }, (_, i) => udp(1 + (i % 65_000), 1, i)), perDatagram: 100 });
  const ct = new Ctnetlink(opener(k));
  const r = await ct.dump({ direction: 'orig', family: 4, protocol: 17 });
  t.match(r, { ok: true, value: { complete: false, flows: { length: MAX_FLOWS } } });
  await ct.dump({ direction: 'orig', family: 4, protocol: 6 });
  t.equal(k.opened, 2, 'the half-read socket is not used again');
});

t.test('a silent kernel or a refusal: a failure, and a new socket next time', async (t) => {
  const silent = fakeKernel({ silent: true });
  const ct = new Ctnetlink(opener(silent));
  t.match(await ct.dump({ direction: 'orig', family: 4, protocol: 17 }), { ok: false, detail: /no answer/ });
  t.match(await ct.remove([udp(1)]), { ok: false, detail: /unanswered/ });
  t.equal(silent.opened, 2);
  const refusing = fakeKernel({ flows: [udp(1)], deleteErrno: 1 });
  t.match(await new Ctnetlink(opener(refusing)).remove([udp(1)]), { ok: false, detail: /errno 1/ });
  const gone = fakeKernel({ flows: [udp(1)], deleteErrno: 2 });
  t.same(await new Ctnetlink(opener(gone)).remove([udp(1), udp(2)]), { ok: true, value: 0 }, 'ENOENT: already gone, no failure');
});

t.test('deletions go 64 to a datagram, each acknowledged', async (t) => {
  const flows = Array.from({ length: 130 }, (_, i) => udp(2000 + i));
  const k = fakeKernel({ flows });
  t.same(await new Ctnetlink(opener(k)).remove(flows), { ok: true, value: 130 });
  t.equal(k.flows.length, 0);
  t.equal(k.requests.length, 130);
});

// ---- the flusher over the fake kernel -----------------------------------------

const sel = (by: FlowSelector['by'], address: string, p: number): FlowSelector => ({ by, protocol: 17, address: ip(address), port: p });

t.test('netlink: the matching flows are deleted, by source and by where they were translated to; the rest stay', async (t) => {
  const k = fakeKernel({ flows: [udp(4000), udp(4001, 4444), udp(4002), { ...udp(4003), protocol: 6 }] });
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { via: 'netlink', openSocket: opener(k) });
  c.flush([sel('source', '192.168.77.10', 4000), sel('translated-to', '198.51.100.1', 4444), sel('source', '192.168.77.10', 4003), sel('source', '192.168.77.99', 4002)]);
  await c.idle();
  t.same(k.flows.map((f) => f.orig.srcPort), [4002, 4003], 'another host, another protocol stay');
  t.equal(c.netlink.dumps, 1, 'one dump for the run (the probe aside): the selectors of one protocol share it');
  t.same(log.lines.filter((l) => l.event === 'conntrack-path').map((l) => l.path), ['netlink']);
  t.same(log.lines.filter((l) => l.level === 'warn'), []);
});

/** A stand-in conntrack tool that logs its runs (as conntrack.test.ts' does). */
function fakeTool(): { binary: string; runs: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-fake-conntrack-'));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  const binary = join(dir, 'conntrack');
  writeFileSync(binary, `#!/bin/sh\necho "run $*" >> ${log}\n`);
  chmodSync(binary, 0o755);
  return { binary, runs: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

t.test('auto: a kernel that does not filter dumps gets the tool, said once', async (t) => {
  const k = fakeKernel({ flows: [udp(4000)], ignoreFilter: true });
  const tool = fakeTool();
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { openSocket: opener(k), binary: tool.binary });
  c.flush([sel('source', '192.168.77.10', 4000)]);
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp']);
  t.match(log.lines.filter((l) => l.event === 'conntrack-path'), [{ path: 'tool', detail: /does not filter/ }]);
  t.equal(k.flows.length, 1, 'nothing deleted over netlink');
});

t.test('auto: no socket to be had gets the tool', async (t) => {
  const tool = fakeTool();
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { binary: tool.binary, openSocket: async () => Promise.reject(new Error('socket(AF_NETLINK, NETLINK_NETFILTER) failed')) });
  await c.prepare();
  c.flush([sel('source', '192.168.77.10', 4000)]);
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp']);
  t.match(log.lines.filter((l) => l.event === 'conntrack-path'), [{ path: 'tool', detail: /socket/ }]);
});

t.test('auto: a netlink run that fails hands its selectors to the tool, and the tool keeps them', async (t) => {
  const k = fakeKernel({ flows: [udp(4000)], deleteErrno: 1 });
  const tool = fakeTool();
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { openSocket: opener(k), binary: tool.binary });
  c.flush([sel('source', '192.168.77.10', 4000)]);
  await c.idle();
  c.flush([sel('source', '192.168.77.10', 4001)]);
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp', 'run -L -f ipv4 -p udp'], 'the failed run, then the next, on the tool');
  t.same(log.lines.filter((l) => l.event === 'conntrack-path').map((l) => l.path), ['netlink', 'tool']);
  t.equal(log.lines.filter((l) => l.event === 'conntrack-failed').length, 1, 'the failure, once');
});

t.test('a socket that throws mid-run: the run fails over to the tool, the daemon does not crash', async (t) => {
  const k = fakeKernel({ flows: [udp(4000)] });
  let calls = 0;
  const throwing: NetlinkSocket = {
    send: (b) => k.socket.send(b),
    // The probe's answers come; the run's first read throws (a bug in a binding, say).
    receive: async (ms) => {
      if (++calls > 3) throw new Error('binding exploded');
      return k.socket.receive(ms);
    },
    close: () => k.socket.close(),
  };
  const tool = fakeTool();
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { openSocket: async () => throwing, binary: tool.binary });
  c.flush([sel('source', '192.168.77.10', 4000)]);
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp'], "the run's selectors went to the tool");
  t.match(log.lines.filter((l) => l.event === 'conntrack-failed'), [{ path: 'netlink', error: /binding exploded/ }]);
});

t.test('a protocol with more flows than a dump reads: one dump per address, and a warning for what is still cut', async (t) => {
  const many = Array.from({ length: MAX_FLOWS + 10 }, (_, i) => udp(1 + i, 1 + i, i + 1));
  const other: Flow = { ...udp(5000, 5000, 999_999), orig: { ...udp(5000).orig, src: ip('192.168.77.11') } };
  const k = fakeKernel({ flows: [...many, other], perDatagram: 500, byAddress: true });
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { via: 'netlink', openSocket: opener(k) });
  c.flush([sel('source', '192.168.77.10', 1), sel('source', '192.168.77.11', 5000)]);
  await c.idle();
  t.equal(c.netlink.dumps, 3, 'the protocol, then each of the two addresses');
  t.notOk(k.flows.some((f) => f.id === 999_999), "the other host's flow, past the first dump's cut, is found by its own");
  t.notOk(k.flows.some((f) => f.id === 1), 'the first host\'s flow is found');
  t.equal(k.flows.length, MAX_FLOWS + 9);
  t.match(log.lines.filter((l) => l.event === 'conntrack-truncated'), [{ level: 'warn', detail: /192\.168\.77\.10/ }], 'said once: the first host has more flows than are read');
});
