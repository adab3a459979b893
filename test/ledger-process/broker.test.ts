// The embedded broker's bounds: MQTT framing followed across any chunking, a packet over the limit
// dropped before it is buffered, a bound on connections, and a clean stop.
import t from 'tap';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connectAsync } from 'mqtt';
import { EmbeddedBroker, FRAME_START, scanFrames, type FrameState } from '../../ledger/broker.js';
import { MAX_PAYLOAD_BYTES, topics } from '../../cloud-bridge/protocol/wire.js';
import { remainingLength } from '../support/mqtt-wire.js';

function frame(type: number, bodyLength: number): Uint8Array {
  return Uint8Array.from([type, ...remainingLength(bodyLength), ...new Array<number>(bodyLength).fill(7)]);
}

/** Feeds `bytes` in chunks of `size` and returns the final state or the first error. */
function scanAll(bytes: Uint8Array, size: number, max: number): ReturnType<typeof scanFrames> {
  let state: FrameState = FRAME_START;
  for (let i = 0; i < bytes.length; i += size) {
    const next = scanFrames(state, bytes.subarray(i, i + size), max);
    if ('error' in next) return next;
    state = next;
  }
  return state;
}

t.test('frame scanning: table of streams, each at every chunk size', async (t) => {
  const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
  const table: { name: string; bytes: Uint8Array; max: number; want: ReturnType<typeof scanFrames> }[] = [
    { name: 'a PINGREQ (no body)', bytes: frame(0xc0, 0), max: 10, want: { at: 'type' } },
    {
      name: 'two packets at the limit',
      bytes: cat(frame(0x30, 10), frame(0x30, 10)),
      max: 10,
      want: { at: 'type' },
    },
    {
      name: 'one byte over',
      bytes: frame(0x30, 11),
      max: 10,
      want: { error: 'PACKET_TOO_LARGE', length: 11 },
    },
    { name: 'a 2-byte length', bytes: frame(0x30, 200), max: 300, want: { at: 'type' } },
    {
      name: 'a 3-byte length over',
      bytes: frame(0x30, 20_000),
      max: 16_383,
      want: { error: 'PACKET_TOO_LARGE' },
    },
    {
      name: 'a huge length is refused from its first bytes, without its body',
      bytes: Uint8Array.from([0x30, ...remainingLength(256 * 1024 * 1024 - 1)]),
      max: MAX_PAYLOAD_BYTES,
      want: { error: 'PACKET_TOO_LARGE' },
    },
    {
      name: 'a fifth length byte',
      bytes: Uint8Array.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]),
      max: 2 ** 30,
      want: { error: 'BAD_LENGTH' },
    },
    {
      name: 'a body cut short',
      bytes: frame(0x30, 10).subarray(0, 8),
      max: 10,
      want: { at: 'body', remaining: 4 },
    },
  ];
  for (const row of table)
    for (const size of [1, 2, 3, 7, 1000])
      t.match(scanAll(row.bytes, size, row.max), row.want, `${row.name}, chunks of ${size}`);
});

t.test('a packet over the limit drops its connection; the broker goes on', async (t) => {
  const broker = new EmbeddedBroker({ port: 0, maxPacketBytes: 4096 });
  const { url } = await broker.start();
  t.teardown(() => broker.stop());
  const listener = await connectAsync(url, { clientId: 'listener', reconnectPeriod: 0 });
  t.teardown(() => listener.endAsync(true));
  const got: string[] = [];
  const control = new Promise<void>((resolve) =>
    listener.on('message', (_topic, payload) => {
      got.push(payload.length > 100 ? `big:${payload.length}` : payload.toString());
      if (payload.toString() === 'control') resolve();
    }),
  );
  await listener.subscribeAsync(topics.allJournals, { qos: 1 });

  const sender = await connectAsync(url, { clientId: 'sender', reconnectPeriod: 0 });
  const closed = new Promise<void>((resolve) => sender.once('close', () => resolve()));
  sender.publish(topics.journal('till-x'), Buffer.alloc(5000, 1), { qos: 1 });
  await closed;
  t.pass('the sender was disconnected');
  sender.end(true);

  const honest = await connectAsync(url, { clientId: 'honest', reconnectPeriod: 0 });
  t.teardown(() => honest.endAsync(true));
  await honest.publishAsync(topics.journal('till-y'), Buffer.alloc(3000, 2), { qos: 1 });
  await honest.publishAsync(topics.journal('till-y'), 'control', { qos: 1 });
  await control;
  t.same(got, ['big:3000', 'control'], 'within the limit passes; the oversized one never arrived');
});

t.test('the default limit takes a full batch and refuses more', async (t) => {
  const broker = new EmbeddedBroker({ port: 0 });
  const { url } = await broker.start();
  t.teardown(() => broker.stop());
  const c = await connectAsync(url, { clientId: 'full', reconnectPeriod: 0 });
  await c.publishAsync(topics.journal('till-z'), Buffer.alloc(MAX_PAYLOAD_BYTES, 1), { qos: 1 });
  t.pass('MAX_PAYLOAD_BYTES passes');
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
  c.publish(topics.journal('till-z'), Buffer.alloc(MAX_PAYLOAD_BYTES + 2048, 1), { qos: 1 });
  await closed;
  t.pass('more is refused');
  c.end(true);
});

t.test('connections past the bound are refused; stop() closes the rest, even half-open ones', async (t) => {
  const broker = new EmbeddedBroker({ port: 0, maxConnections: 2 });
  const { port } = await broker.start();
  const raw = (): Promise<Socket> =>
    new Promise((resolve) => {
      const s = tcpConnect(port, '127.0.0.1', () => resolve(s));
    });
  const closedOf = (s: Socket) => new Promise<void>((resolve) => s.once('close', () => resolve()));
  const [a, b] = [await raw(), await raw()];
  const third = await raw();
  await closedOf(third);
  t.pass('the third connection is closed at once');
  // a and b never sent CONNECT: aedes does not know them, stop() still closes them.
  const both = Promise.all([closedOf(a), closedOf(b)]);
  await broker.stop();
  await both;
  t.pass('stopped, with every socket closed');
});
