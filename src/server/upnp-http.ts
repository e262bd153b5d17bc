// UPnP's HTTP side on the LAN: descriptions, SOAP control, GENA
// subscriptions. One request per connection, every size and wait bounded:
// our own bounded parser (not node:http, whose limits are process-wide and
// whose body handling we would have to bound anyway), a deadline for the
// whole request (slow-loris), connections capped per source, per /64, per
// interface and in all (src/server/fair-share.ts). Only LAN sources are
// served, by the daemon's one rule (src/net/lan-source.ts: nothing while the
// kernel guard is not confirmed; a link-local peer only with a LAN zone); a
// web page's request (an Origin header, a host name in Host, a non-XML body)
// is refused: that is how "Filet-o-Firewall" reached UPnP from a browser.

import { createServer, type Server, type Socket } from 'node:net';
import { isLinkLocal, parseIp, zoneOf, type IpAddress } from '../net/address.js';
import type { LocalAddress } from '../net/interfaces.js';
import type { LanSources } from '../net/lan-source.js';
import type { Logger } from '../log.js';
import { HttpRequestParser, buildResponse, CONTENT_TYPE_XML, type HttpRequest } from '../protocols/upnp/http.js';
import { parseSoapAction, parseSoapRequest, soapFaultFor, soapResponse, UpnpError } from '../protocols/upnp/soap.js';
import { parseGenaRequest } from '../protocols/upnp/gena.js';
import type { ServiceKey, UpnpPaths } from '../protocols/upnp/description.js';
import type { IgdVersion, ServiceName } from '../protocols/upnp/device-tree.js';
import { findAction, type IgdControl } from '../protocols/upnp/igd.js';
import { NO_TELEMETRY, type Telemetry } from '../telemetry.js';
import { FairShare, requesterOf, shareOf, type Requester } from './fair-share.js';
import { LanSockets } from './lan-sockets.js';
import type { GenaManager } from './gena-publisher.js';

export interface UpnpHttpConfig {
  port: number;
  paths: UpnpPaths;
  /** Rendered documents. */
  description: Readonly<Record<IgdVersion, string>>;
  scpd: Readonly<Record<ServiceKey, string>>;
  /** Which root description a client gets, from its User-Agent. */
  igdVersionFor(userAgent: string | undefined): IgdVersion;
  server: string;
}

const HTTP_LIMITS = {
  /** Whole request, first byte to last (slow-loris). */
  deadlineMs: 10_000,
  perSource: 8,
  total: 128,
};
/** Connection slots: a /64 holds at most a quarter of them, an interface three quarters. */
export const HTTP_SLOTS = shareOf(HTTP_LIMITS.total, HTTP_LIMITS.perSource);

export class UpnpHttpServer {
  private readonly sockets: LanSockets<{ local: LocalAddress; server: Server }>;
  private readonly slots = new FairShare(HTTP_SLOTS);
  private readonly routes = new Map<string, { kind: 'doc'; body: () => string } | { kind: 'description'; version: IgdVersion } | { kind: 'control'; service: ServiceName } | { kind: 'event'; service: ServiceName }>();

  constructor(
    private readonly cfg: UpnpHttpConfig,
    private lan: readonly LocalAddress[],
    private readonly sources: LanSources,
    private readonly control: IgdControl,
    private readonly gena: GenaManager,
    private readonly log: Logger,
    /** Told of every request answered: its operation (the SOAP action, 'description', 'subscribe' …), result and seconds. */
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    const p = cfg.paths;
    this.routes.set(p.description[1], { kind: 'description', version: 1 });
    // LOCATION names the IGD:2 path; what it serves depends on who asks.
    this.routes.set(p.description[2], { kind: 'description', version: 2 });
    for (const [key, path] of Object.entries(p.scpd) as [ServiceKey, string][]) this.routes.set(path, { kind: 'doc', body: () => cfg.scpd[key] });
    for (const [service, path] of Object.entries(p.control) as [ServiceName, string][]) this.routes.set(path, { kind: 'control', service });
    for (const [service, path] of Object.entries(p.event) as [ServiceName, string][]) this.routes.set(path, { kind: 'event', service });
    this.sockets = new LanSockets({
      server: 'upnp-http',
      port: cfg.port,
      // LOCATION names routable addresses: link-local ones are not served.
      select: (lan) => lan.filter((l) => !(l.family === 6 && isLinkLocal(l.address))),
      open: (local) => this.listen(local),
      // Resolves once the connections still open have ended (each within its deadline).
      close: (b) => new Promise<void>((r) => b.server.close(() => r())),
      failedEvent: 'upnp-http-bind-failed',
      log,
    });
  }

  async start(): Promise<void> {
    await this.sockets.start(this.lan, { fatal: false });
  }

  /** Listens on each LAN address except link-local ones; follows changes. */
  async updateAddresses(lan: readonly LocalAddress[]): Promise<void> {
    this.lan = lan;
    await this.sockets.update(lan);
  }

  /** Addresses still waiting to be bound. */
  waiting(): string[] {
    return this.sockets.waiting();
  }

  private async listen(local: LocalAddress): Promise<{ local: LocalAddress; server: Server }> {
    // A client may half-close after its request (legal HTTP): still answer it.
    const server = createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    server.maxConnections = HTTP_LIMITS.total;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.cfg.port, host: local.bindAddress, exclusive: true }, () => resolve());
    });
    return { local, server };
  }

  async stop(): Promise<void> {
    await this.sockets.stop();
  }

  private accept(sock: Socket): void {
    // Node names a link-local peer with its zone: the interface it came in on.
    const peer = sock.remoteAddress ?? '';
    // From the whole request's arrival (a slow sender's wait is not ours) to the answer.
    let started = performance.now();
    const report = (op: string, result: string) => this.telemetry.request('upnp', op, result, (performance.now() - started) / 1000);
    const source = this.sources.check(peer);
    if (!source) {
      sock.destroy();
      report('http', 'not-lan');
      return;
    }
    const who = requesterOf(source, zoneOf(peer), this.lan, this.sources.hostOf);
    const release = this.slots.take(who);
    if (!release) {
      sock.end(buildResponse(503, [['Connection', 'close']]));
      sock.destroy();
      report('http', '503');
      return;
    }
    sock.once('close', release);
    sock.on('error', () => undefined);
    const deadline = setTimeout(() => sock.destroy(), HTTP_LIMITS.deadlineMs);
    sock.once('close', () => clearTimeout(deadline));
    const parser = new HttpRequestParser();
    let handled = false;
    // The client finished sending: if no whole request came, there is
    // nothing to answer; otherwise our reply ends the connection.
    sock.once('end', () => {
      if (!handled) sock.destroy();
    });
    sock.on('data', (chunk: Buffer) => {
      if (handled) return;
      const step = parser.feed(chunk);
      if (step.state === 'need-more') return;
      handled = true;
      started = performance.now();
      sock.pause();
      if (step.state === 'error') {
        this.reply(sock, step.status, [], '');
        report('http', String(step.status));
        return;
      }
      this.route(step.request, who).then(
        (r) => {
          this.reply(sock, r.status, r.headers, r.body, step.request.method === 'HEAD');
          report(r.op, r.result ?? String(r.status));
        },
        (err: unknown) => {
          this.log.error({ event: 'upnp-http-failed', error: (err as Error).message });
          this.reply(sock, 500, [], '');
          report('http', 'error');
        },
      );
    });
  }

  private reply(sock: Socket, status: number, headers: [string, string][], body: string, omitBody = false): void {
    const all: [string, string][] = [['Server', this.cfg.server], ['Connection', 'close'], ...headers];
    sock.end(buildResponse(status, all, body, { omitBody }));
    // Whatever the client still sends is read and dropped, so its close is
    // seen at once and its connection slot freed (the deadline still bounds it).
    sock.resume();
  }

  private async route(req: HttpRequest, who: Requester): Promise<Answer> {
    const source: IpAddress = who.address;
    const none = { headers: [] as [string, string][], body: '' };
    // A browser's request carries an Origin; a UPnP control point never does.
    if (req.headers.has('origin')) return { op: 'http', status: 403, ...none };
    // DNS rebinding: a page served from a name that resolves to us sends that name as Host.
    const host = req.headers.get('host');
    if (host !== undefined && !isIpHost(host)) return { op: 'http', status: 403, ...none };
    const route = this.routes.get(req.path);
    if (!route) return { op: 'http', status: 404, ...none };
    if (route.kind === 'doc' || route.kind === 'description') {
      const op = route.kind === 'doc' ? 'scpd' : 'description';
      if (req.method !== 'GET' && req.method !== 'HEAD') return { op, status: 405, headers: [['Allow', 'GET, HEAD']], body: '' };
      const body = route.kind === 'doc' ? route.body() : this.cfg.description[route.version === 1 ? 1 : this.cfg.igdVersionFor(req.headers.get('user-agent'))];
      return { op, status: 200, headers: [['Content-Type', CONTENT_TYPE_XML]], body };
    }
    if (route.kind === 'event') {
      if (req.method !== 'SUBSCRIBE' && req.method !== 'UNSUBSCRIBE') return { op: 'event', status: 405, headers: [['Allow', 'SUBSCRIBE, UNSUBSCRIBE']], body: '' };
      const op = req.method.toLowerCase();
      const parsed = parseGenaRequest(req.method, req.headers);
      if (!parsed.ok) return { op, status: parsed.status, ...none };
      const answer = this.gena.handle(route.service, parsed, who);
      return { op, status: answer.status, headers: [['Date', new Date().toUTCString()], ...answer.headers], body: '' };
    }
    if (req.method !== 'POST') return { op: 'control', status: 405, headers: [['Allow', 'POST']], body: '' };
    const type = req.headers.get('content-type') ?? '';
    if (!/^text\/xml\b/i.test(type) && !/^application\/(soap\+)?xml\b/i.test(type)) return { op: 'control', status: 415, ...none };
    const header = parseSoapAction(req.headers.get('soapaction'));
    const fault = (op: string, def: typeof UpnpError.INVALID_ACTION, detail: string): Answer => {
      this.log.info({ event: 'upnp', client: source, verdict: 'fault', code: def.code, detail });
      return { op, result: String(def.code), status: 500, headers: [['Content-Type', CONTENT_TYPE_XML], ['EXT', '']], body: soapFaultFor(def) };
    };
    if (!header.ok) return fault('control', UpnpError.INVALID_ACTION, `SOAPACTION: ${header.detail}`);
    const soap = parseSoapRequest(req.body.toString('utf8'), header);
    if (!soap.ok) return fault('control', soap.code === 401 ? UpnpError.INVALID_ACTION : UpnpError.INVALID_ARGS, soap.detail);
    // The action's name from the action table, never the client's string: an unknown one is 'control'.
    const op = findAction(soap.serviceName, soap.serviceVersion, soap.action) ? soap.action : 'control';
    const result = await this.control.handle({ serviceName: soap.serviceName, serviceVersion: soap.serviceVersion, action: soap.action, args: soap.args, client: source });
    if (!result.ok) return fault(op, result.error, `${soap.action}: ${result.detail}`);
    // A debug line: a change was told at info by the service's decision line
    // (via upnp), and a read is no decision; at 64 in flight this line was one
    // of the two log writes per AddPortMapping.
    this.log.debug({ event: 'upnp', client: source, action: soap.action, verdict: 'ok' });
    return { op, result: 'ok', status: 200, headers: [['Content-Type', CONTENT_TYPE_XML], ['EXT', '']], body: soapResponse(soap.serviceType, soap.action, result.out) };
  }
}

/** One HTTP answer, and what the metrics count it as: the operation, and the result (the status code unless said). */
interface Answer {
  op: string;
  result?: string;
  status: number;
  headers: [string, string][];
  body: string;
}

/** `192.168.1.1`, `192.168.1.1:5000`, `[2001:db8::1]:5000`: no names. */
function isIpHost(host: string): boolean {
  const m = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(host) ?? /^([\d.]+)(?::\d{1,5})?$/.exec(host);
  return m !== null && parseIp((m[1] ?? '').split('%')[0] ?? '') !== undefined;
}
