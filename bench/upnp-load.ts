// UPnP load generator for `npm run bench`, run inside the lab's LAN
// namespace: finds the IGD the way a control point does (unicast M-SEARCH,
// LOCATION, the description's WANIPConnection controlURL), then keeps
// `concurrency` AddPortMapping SOAP requests in flight over plain TCP, one
// request per connection, each from one of many LAN source addresses and for
// that address itself. Request i maps UDP port startPort + i (external and
// internal), so every request creates a new mapping. It stops issuing after
// `count` requests or `durationMs` and waits for the ones in flight.
//
// Reported in load.ts' shape: the rate is the successes answered while it was
// issuing over that time (the throughput with `concurrency` requests
// queued; a straggler answered later, e.g. after its SYN was dropped on a
// full accept queue and resent, adds to `succeeded` and to the latencies but
// not to the rate); `retransmissions` are the TCP segments the LAN host
// resent (its namespace's RetransSegs), `lost` the requests unanswered
// after `timeoutMs`.

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from './load.js';

export interface UpnpLoadSpec {
  /** DeletePortMapping undoes what the same spec added (a warm-up). */
  action: 'AddPortMapping' | 'DeletePortMapping';
  /** The router's LAN address: SSDP and HTTP. */
  server: string;
  clients: string[];
  /** Requests in flight, over all clients. */
  concurrency: number;
  /** Request i maps UDP startPort + i (external and internal). */
  startPort: number;
  /** At most this many requests… */
  count: number;
  /** …issued within this long. */
  durationMs: number;
  /** One request, connect to last byte of the answer. */
  timeoutMs: number;
}

export interface UpnpTarget {
  location: string;
  port: number;
  controlPath: string;
  serviceType: string;
}

export interface UpnpLoadResult extends LoadResult {
  target: UpnpTarget;
  /** The load generator's own CPU seconds (user + system) over the run: whether the client, not the server, was the limit. */
  clientCpuSeconds: number;
}

/** A counter of /proc/net/snmp or /proc/net/netstat's text ("Tcp", "RetransSegs"): a header line, then a values line. */
export function netCounter(text: string, group: string, name: string): number {
  const [names, values] = text.split('\n').filter((l) => l.startsWith(`${group}: `)).map((l) => l.split(/\s+/));
  return Number(values?.[names?.indexOf(name) ?? -1] ?? NaN);
}

const retransSegs = () => netCounter(readFileSync('/proc/self/net/snmp', 'utf8'), 'Tcp', 'RetransSegs');

/** SSDP search (UDA 1.1 §1.3.2), unicast to the router, retried each second. */
async function discover(server: string): Promise<string> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, () => r()));
  try {
    return await new Promise<string>((resolve, reject) => {
      const send = (st: string) =>
        sock.send(`M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${st}\r\nUSER-AGENT: Linux/6 UPnP/2.0 portcullis-bench/1\r\n\r\n`, 1900, server);
      let tries = 0;
      const ask = () => {
        if (tries++ >= 5) {
          clearInterval(timer);
          reject(new Error(`no SSDP answer from ${server}`));
          return;
        }
        send('urn:schemas-upnp-org:service:WANIPConnection:2');
        send('urn:schemas-upnp-org:service:WANIPConnection:1');
      };
      const timer = setInterval(ask, 1000);
      sock.on('message', (m) => {
        const location = /^location:\s*(\S+)/im.exec(m.toString('latin1'))?.[1];
        if (!location) return;
        clearInterval(timer);
        resolve(location);
      });
      ask();
    });
  } finally {
    sock.close();
  }
}

interface Answer {
  status: number;
  body: string;
}

/** One HTTP/1.1 request on its own connection; the answer ends when the server closes. */
function exchange(host: string, port: number, localAddress: string | undefined, request: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, localAddress });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(new Error('timeout')), timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
    // Not end(): portcullis' server closes a connection whose client shut
    // its write side after the request (legal HTTP) before it answers — the
    // action is still carried out. The server's close ends the exchange.
    sock.write(request);
  });
}

async function findControl(server: string): Promise<UpnpTarget> {
  const location = await discover(server);
  const url = new URL(location);
  const port = Number(url.port || 80);
  const desc = await exchange(url.hostname, port, undefined, `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`, 10_000);
  if (desc.status !== 200) throw new Error(`GET ${location}: HTTP ${desc.status}`);
  // The highest WANIPConnection version the device describes.
  const services = [...desc.body.matchAll(/<service>([\s\S]*?)<\/service>/g)].map((m) => ({
    type: /<serviceType>\s*([^<\s]+)\s*<\/serviceType>/.exec(m[1] ?? '')?.[1] ?? '',
    control: /<controlURL>\s*([^<\s]+)\s*<\/controlURL>/.exec(m[1] ?? '')?.[1] ?? '',
  }));
  const wanip = services.filter((s) => /^urn:schemas-upnp-org:service:WANIPConnection:\d+$/.test(s.type)).sort((a, b) => b.type.localeCompare(a.type))[0];
  if (!wanip) throw new Error(`${location}: no WANIPConnection service`);
  return { location, port, controlPath: new URL(wanip.control, location).pathname, serviceType: wanip.type };
}

function soapRequest(t: UpnpTarget, action: UpnpLoadSpec['action'], server: string, client: string, port: number): string {
  const args = [
    ['NewRemoteHost', ''],
    ['NewExternalPort', String(port)],
    ['NewProtocol', 'UDP'],
    ...(action === 'AddPortMapping'
      ? [
          ['NewInternalPort', String(port)],
          ['NewInternalClient', client],
          ['NewEnabled', '1'],
          ['NewPortMappingDescription', 'bench'],
          ['NewLeaseDuration', '3600'],
        ]
      : []),
  ];
  const body =
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:${action} xmlns:u="${t.serviceType}">${args.map(([k, v]) => `<${k}>${v}</${k}>`).join('')}</u:${action}></s:Body></s:Envelope>\r\n`;
  return (
    `POST ${t.controlPath} HTTP/1.1\r\nHost: ${server}:${t.port}\r\nContent-Type: text/xml; charset="utf-8"\r\n` +
    `SOAPAction: "${t.serviceType}#${action}"\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

async function run(spec: UpnpLoadSpec): Promise<UpnpLoadResult> {
  const target = await findControl(spec.server);
  const latencies: number[] = [];
  const codes: Record<string, number> = {};
  const count = (code: string) => (codes[code] = (codes[code] ?? 0) + 1);
  let succeeded = 0;
  let failed = 0;
  let lost = 0;
  let next = 0;
  let issuing = true;
  let inWindow = 0;
  let windowEnd = 0;
  const retrans0 = retransSegs();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const worker = async () => {
    for (;;) {
      if (issuing && (next >= spec.count || performance.now() - start >= spec.durationMs)) {
        issuing = false;
        windowEnd = performance.now();
      }
      if (!issuing) return;
      const i = next++;
      const client = spec.clients[i % spec.clients.length] as string;
      const t0 = performance.now();
      try {
        const a = await exchange(spec.server, target.port, client, soapRequest(target, spec.action, spec.server, client, spec.startPort + i), spec.timeoutMs);
        if (a.status === 200 && a.body.includes(`${spec.action}Response`)) {
          succeeded++;
          if (issuing) inWindow++;
          latencies.push(performance.now() - t0);
          count('ok');
        } else {
          failed++;
          count(a.status === 500 ? `fault ${/<errorCode>\s*(\d+)/.exec(a.body)?.[1] ?? '?'}` : `HTTP ${a.status}`);
        }
      } catch (err) {
        // A timeout or a reset: no answer.
        lost++;
        count((err as NodeJS.ErrnoException).code ?? (err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  const cpu = process.cpuUsage(cpu0);
  const seconds = (windowEnd - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? NaN;
  return { target, requested: next, succeeded, failed, lost, seconds, rate: inWindow / seconds, p50ms: pct(50), p99ms: pct(99), retransmissions: retransSegs() - retrans0, codes, clientCpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  run(JSON.parse(process.argv[2] ?? '{}') as UpnpLoadSpec).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: unknown) => {
      process.stderr.write(String(err) + '\n');
      process.exit(1);
    },
  );
}
