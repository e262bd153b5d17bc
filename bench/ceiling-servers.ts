// The least a server on this machine must do, for `bench/ceilings.ts`: run
// inside the lab's router namespace in place of portcullis, each answers the
// bench's own load generators with no table, no firewall and no journal.
//
//   node dist/bench/ceiling-servers.js pcp    a PCP MAP answered by mirroring the request's bytes
//   node dist/bench/ceiling-servers.js upnp   SSDP, a description, and one canned SOAP answer a connection
//   node dist/bench/ceiling-servers.js nft    libnftables alone: single-element transactions, as a light load commits
//
// The servers print `ready` once listening and run until killed; `nft`
// prints one JSON line and exits. Addresses are the lab's (bench/lab.sh).

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer } from 'node:net';
import { openLibnftables, libraryRunner } from '../src/firewall/nft/libnftables.js';
import { percentile } from './load.js';

const LAN4 = '192.168.77.1';
const LAN6 = '2001:db8:77::1';

/**
 * A PCP MAP success (RFC 6887 §7.2, §11.1) made from the request's bytes: its
 * lifetime granted, the external port its internal port, the external
 * address the client's own (an IPv6 pinhole's). What any PCP server must do
 * at the least: one datagram in, one out.
 */
function pcp(): void {
  const started = Date.now();
  const answer = (sock: Socket) => (req: Buffer, from: RemoteInfo) => {
    if (req.length < 60 || req[0] !== 2 || req[1] !== 1) return;
    const res = Buffer.alloc(60);
    res[0] = 2;
    res[1] = 0x81;
    req.copy(res, 4, 4, 8); // lifetime
    res.writeUInt32BE(Math.floor((Date.now() - started) / 1000), 8); // epoch
    req.copy(res, 24, 24, 42); // nonce, protocol, internal port
    req.copy(res, 42, 40, 42); // external port = internal port
    req.copy(res, 44, 8, 24); // external address = the client's
    sock.send(res, from.port, from.address);
  };
  let listening = 0;
  for (const [type, address] of [['udp6', LAN6], ['udp4', LAN4]] as const) {
    const sock = createSocket(type);
    sock.on('message', answer(sock));
    sock.bind(5351, address, () => {
      // As the daemon's sockets (src/server/port-control.ts): a burst of 2 048 queues instead of being dropped.
      sock.setRecvBufferSize(4 << 20);
      if (++listening === 2) process.stdout.write('ready\n');
    });
  }
}

const DESCRIPTION =
  '<?xml version="1.0"?>\r\n<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><device>' +
  '<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><friendlyName>ceiling</friendlyName><UDN>uuid:00000000-0000-4000-8000-000000000001</UDN>' +
  '<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>' +
  '<controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL></service></serviceList></device></root>\r\n';
const SOAP_OK =
  '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
  '<u:AddPortMappingResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"/></s:Body></s:Envelope>\r\n';
const http = (type: string, body: string) => Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
const DESCRIPTION_ANSWER = http('text/xml; charset="utf-8"', DESCRIPTION);
const SOAP_ANSWER = http('text/xml; charset="utf-8"', SOAP_OK);
const NOT_FOUND = Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * UPnP's floor: a TCP connection accepted, one request read to the end of
 * its body (Content-Length), a canned answer written, the connection closed
 * (what the bench's control points and miniupnpc ask for). No XML is parsed
 * and nothing is mapped.
 */
function upnp(): void {
  const ssdp = createSocket('udp4');
  ssdp.on('message', (m, from) => {
    if (!m.toString('latin1').startsWith('M-SEARCH')) return;
    const st = /^st:\s*(\S+)/im.exec(m.toString('latin1'))?.[1] ?? 'upnp:rootdevice';
    ssdp.send(`HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\nLOCATION: http://${LAN4}:5000/desc.xml\r\nST: ${st}\r\nUSN: uuid:00000000-0000-4000-8000-000000000001::${st}\r\n\r\n`, from.port, from.address);
  });
  const server = createServer((sock) => {
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const end = buf.indexOf(HEAD_END);
      if (end < 0) return;
      const head = buf.toString('latin1', 0, end);
      const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      sock.end(head.startsWith('GET /desc.xml') ? DESCRIPTION_ANSWER : head.startsWith('POST /ctl') ? SOAP_ANSWER : NOT_FOUND);
    });
    sock.on('error', () => sock.destroy());
  });
  let listening = 0;
  const up = () => ++listening === 2 && process.stdout.write('ready\n');
  ssdp.bind(1900, LAN4, up);
  server.listen(5000, LAN4, up);
}

/**
 * libnftables alone, in this namespace: `calls` transactions of one set
 * element each, one after the other as the daemon's commits are, through the
 * daemon's own runner; then the same with 8 elements a call. Each call's wall
 * time, and the CPU of the whole process (its worker thread included).
 */
async function nft(calls: number): Promise<void> {
  const run = libraryRunner(await openLibnftables());
  const setup = await run.script('add table inet ceiling\nadd set inet ceiling pinholes6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }\n');
  if (!setup.ok) throw new Error(setup.stderr);
  const out: Record<string, unknown> = { calls };
  try {
    let port = 1;
    for (const per of [1, 8]) {
      const timed: number[] = [];
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < calls + 200; i++) {
        const elem = Array.from({ length: per }, () => ({ elem: { val: { concat: ['2001:db8:77::1:1', 'udp', port++ % 65536 || 1] }, timeout: 3600 } }));
        const at = performance.now();
        const r = await run.batch([{ add: { element: { family: 'inet', table: 'ceiling', name: 'pinholes6', elem } } }]);
        if (!r.ok) throw new Error(r.stderr);
        if (i >= 200) timed.push(performance.now() - at); // the first 200 warm up
        if (port > 60_000) {
          await run.script('flush set inet ceiling pinholes6\n');
          port = 1;
        }
      }
      const cpu = process.cpuUsage(cpu0);
      timed.sort((a, b) => a - b);
      const pct = (p: number) => Math.round(percentile(timed, p) * 100) / 100;
      out[`elements${per}`] = { perSecond: Math.round(calls / ((performance.now() - t0) / 1000)), p50ms: pct(50), p99ms: pct(99), maxMs: Math.round((timed.at(-1) ?? NaN) * 100) / 100, cpuMsPerCall: Math.round(((cpu.user + cpu.system) / 1000 / (calls + 200)) * 1000) / 1000 };
    }
  } finally {
    await run.script('delete table inet ceiling\n');
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const what = process.argv[2];
if (what === 'pcp') pcp();
else if (what === 'upnp') upnp();
else if (what === 'nft') await nft(Number(process.argv[3] ?? 3000));
else throw new Error('usage: ceiling-servers.js pcp|upnp|nft [calls]');
