// The admin API's live events (GET /api/events) as a test hears them: the
// stream's text so far, and a wait for the next `openings` event after a
// point in it.

import { request } from 'node:http';
import { until } from './wait.js';

export interface EventStream {
  /** Everything heard so far. */
  text(): string;
  /** How many `openings` events were heard so far. */
  openings(): number;
  close(): void;
}

/** Opens the stream with `headers` (a bearer token) and waits for its hello (10 s at most). */
export async function eventStream(port: number, headers: Record<string, string>): Promise<EventStream> {
  let heard = '';
  const req = request({ host: '127.0.0.1', port, path: '/api/events', headers, agent: false }, (res) => {
    if (res.statusCode !== 200) heard += `status ${res.statusCode}`;
    res.on('data', (d: Buffer) => (heard += d.toString()));
  });
  req.on('error', () => undefined);
  req.end();
  const stream: EventStream = {
    text: () => heard,
    openings: () => heard.split('event: openings\n').length - 1,
    close: () => req.destroy(),
  };
  if (!(await until(() => heard.includes('event: hello'), 10_000))) {
    stream.close();
    throw new Error(`no hello on /api/events; heard: ${heard}`);
  }
  return stream;
}
