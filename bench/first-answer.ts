// How soon a (re)starting daemon answers, for `npm run bench`'s restart row,
// run inside the lab's LAN namespace: one client asks for one new mapping
// (PCP MAP, the same request every `intervalMs`, as a retransmitting client
// would) from before the daemon starts until the first success, and prints
// the wall-clock time of that answer. Wall time, not performance.now(): the
// bench compares it with the moment it started the daemon, in another
// process on the same machine.

import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { mustParseIp } from '../src/net/address.js';
import { encodePcpRequest } from '../src/protocols/pcp/codec.js';

export interface FirstAnswerSpec {
  server: string;
  client: string;
  internalPort: number;
  intervalMs: number;
  deadlineMs: number;
}

export interface FirstAnswer {
  /** Date.now() when the first success arrived. */
  answeredWall: number;
  sent: number;
  /** Answers that were not a success (a refusal while restoring would be one). */
  refusals: Record<string, number>;
}

function run(spec: FirstAnswerSpec): Promise<FirstAnswer> {
  const v6 = spec.client.includes(':');
  const sock = createSocket(v6 ? 'udp6' : 'udp4');
  const nonce = Buffer.alloc(12, 0x5a);
  const request = encodePcpRequest({
    opcode: 1,
    lifetime: 3600,
    clientAddress: mustParseIp(spec.client),
    map: { nonce, protocol: 17, internalPort: spec.internalPort, externalPort: 0, externalAddress: mustParseIp(v6 ? '::' : '0.0.0.0') },
  });
  const refusals: Record<string, number> = {};
  let sent = 0;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      clearInterval(timer);
      sock.close();
      reject(new Error(`no success from ${spec.server} within ${spec.deadlineMs} ms (refusals ${JSON.stringify(refusals)})`));
    }, spec.deadlineMs);
    // A port nobody listens on yet answers with ICMP; the next try follows anyway.
    sock.on('error', () => undefined);
    sock.on('message', (m) => {
      const code = m[3] ?? 255;
      if (m.length < 60 || m.readUInt16BE(40) !== spec.internalPort) return;
      if (code !== 0) {
        refusals[code] = (refusals[code] ?? 0) + 1;
        return;
      }
      const answeredWall = Date.now();
      clearInterval(timer);
      clearTimeout(deadline);
      sock.close();
      resolve({ answeredWall, sent, refusals });
    });
    sock.bind(0, spec.client, () => {
      const send = () => {
        sent++;
        sock.send(request, 5351, spec.server);
      };
      timer = setInterval(send, spec.intervalMs);
      process.stderr.write('asking\n');
      send();
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  run(JSON.parse(process.argv[2] ?? '{}') as FirstAnswerSpec).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: unknown) => {
      process.stderr.write(String(err) + '\n');
      process.exit(1);
    },
  );
}
