// Every rfc-vectors/ case through the same path a UDP datagram takes
// (dispatch → codec → handler → MappingService → memory firewall).

import t from 'tap';
import { harness } from './helpers/harness.js';
import { loadVectors, matchesPattern } from './helpers/vectors.js';

const vectors = loadVectors();

t.test('there is a vector for every class of case', async (t) => {
  t.ok(vectors.length >= 90, `${vectors.length} vectors`);
  t.ok(vectors.some((v) => v.protocol === 'natpmp'));
  t.ok(vectors.some((v) => v.response === null), 'silence cases');
});

function isErrorReply(v: { protocol: string }, reply: Buffer): boolean {
  return v.protocol === 'natpmp' && reply[0] === 0 ? reply.readUInt16BE(2) !== 0 : reply[3] !== 0;
}

for (const v of vectors) {
  t.test(`${v.file}: ${v.description} (${v.rfc})`, async (t) => {
    const h = harness();
    if (v.external === null) h.setExternal(undefined);
    for (const s of v.setup) {
      const r = await h.send(s.source, Buffer.from(s.request, 'hex'));
      t.ok(r, 'setup request answered');
    }
    const before = JSON.stringify(h.firewall.list());
    const tableBefore = h.service.count();
    const reply = await h.send(v.source, Buffer.from(v.request, 'hex'));
    if (v.response === null) {
      t.equal(reply, undefined, 'silence');
    } else {
      t.ok(reply, 'answered');
      if (!reply) return;
      t.ok(matchesPattern(reply, v.response), `reply matches\n  got  ${reply.toString('hex')}\n  want ${v.response}`);
      t.ok(reply.length <= 1100 && reply.length % 4 === 0 || v.protocol === 'natpmp', 'PCP replies ≤ 1100 octets, multiple of 4');
    }
    if (reply === undefined || isErrorReply(v, reply)) {
      // RFC 6887 §7.3: an error changes no state at all.
      t.equal(JSON.stringify(h.firewall.list()), before, 'firewall unchanged');
      t.equal(h.service.count(), tableBefore, 'table unchanged');
    }
  });
}
