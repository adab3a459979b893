import t from 'tap';
import {
  FRAME_OVERHEAD,
  HEADER_BYTES,
  MAX_RECORD_BYTES,
  SECTOR_BYTES,
  alignUp,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  findFrameAfter,
  parseSegmentName,
  readFrame,
  segmentName,
} from '../../../appliance/journal/format.js';

t.test('a header round-trips and rejects damage', async (t) => {
  const h = { version: 1, deviceId: 'store-7.till-2', epoch: 3, index: 12, firstSeq: 2 ** 40 };
  const buf = encodeHeader(h);
  t.equal(buf.length, HEADER_BYTES);
  t.same(decodeHeader(buf), { ok: true, header: h });
  t.same(decodeHeader(buf.subarray(0, 100)), { ok: false, problem: 'short' });
  const flipped = Buffer.from(buf);
  flipped[40] ^= 0x01;
  t.same(decodeHeader(flipped), { ok: false, problem: 'crc' });
  const foreign = Buffer.from(buf);
  foreign.write('PK', 0);
  t.same(decodeHeader(foreign), { ok: false, problem: 'magic' });
  t.same(decodeHeader(encodeHeader({ ...h, version: 2 })), { ok: false, problem: 'version' });
});

t.test('a frame round-trips; short, zero, oversized and bad-CRC frames are told apart', async (t) => {
  const payload = Buffer.from('{"seq":1}');
  const frame = encodeFrame(payload);
  t.equal(frame.length, FRAME_OVERHEAD + payload.length);
  const ok = readFrame(frame, 0);
  t.equal(ok.kind, 'ok');
  if (ok.kind === 'ok') t.same(ok.payload, payload);
  t.equal(readFrame(frame.subarray(0, 5), 0).kind, 'short');
  t.equal(readFrame(frame.subarray(0, frame.length - 1), 0).kind, 'short');
  t.equal(readFrame(Buffer.alloc(20), 0).kind, 'bad', 'zeros are not a frame');
  const huge = Buffer.alloc(16);
  huge.writeUInt32LE(MAX_RECORD_BYTES + 1, 0);
  t.equal(readFrame(huge, 0).kind, 'bad');
  const garbled = Buffer.from(frame);
  garbled[FRAME_OVERHEAD + 2] ^= 0x20;
  t.equal(readFrame(garbled, 0).kind, 'bad');
});

t.test('findFrameAfter finds a whole frame behind garbage, and nothing in a torn tail', async (t) => {
  const a = encodeFrame(Buffer.from('{"a":1}'));
  const b = encodeFrame(Buffer.from('{"b":2}'));
  const junk = Buffer.alloc(SECTOR_BYTES, 'garbage!');
  t.equal(findFrameAfter(Buffer.concat([junk, b]), 1), SECTOR_BYTES, 'found on the next sector boundary');
  t.equal(
    findFrameAfter(Buffer.concat([Buffer.from('xy'), b]), 1),
    undefined,
    'frames only start on boundaries',
  );
  t.equal(findFrameAfter(Buffer.concat([a.subarray(0, 9), junk]), 1), undefined);
});

t.test('padded frames fill whole sectors', async (t) => {
  const frame = encodeFrame(Buffer.from('{"seq":1}'), true);
  t.equal(frame.length, SECTOR_BYTES);
  t.equal(readFrame(frame, 0).kind, 'ok');
  t.equal(encodeFrame('x'.repeat(600), true).length, 2 * SECTOR_BYTES);
  t.equal(alignUp(0), 0);
  t.equal(alignUp(1), SECTOR_BYTES);
  t.equal(alignUp(SECTOR_BYTES), SECTOR_BYTES);
});

t.test('segment names', async (t) => {
  t.equal(segmentName(7), '00000007.seg');
  t.equal(parseSegmentName('00000007.seg'), 7);
  t.equal(parseSegmentName('7.seg'), undefined);
  t.equal(parseSegmentName('00000007.seg.tmp'), undefined);
});
