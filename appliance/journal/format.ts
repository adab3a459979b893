// On-flash layout of the journal (◆, documented in docs/journal.md): segment headers and record frames.
import { crc32 } from 'node:zlib';

export const FORMAT_VERSION = 1;
export const SEGMENT_MAGIC = Buffer.from('REGJRNL\0', 'latin1');
export const CHECKPOINT_MAGIC = Buffer.from('REGCKPT\0', 'latin1');
/** Fixed header size in bytes: room for a 64-byte device id, with the CRC in the last 4 bytes. */
export const HEADER_BYTES = 128;
/** u32 length + u32 crc32 before each payload. */
export const FRAME_OVERHEAD = 8;
/**
 * Frames start on sector boundaries and are padded with zeros to the next one, so appending a record
 * never rewrites a sector that holds an earlier one: a sector garbled by a power cut can only damage
 * the record that was being written, never an acknowledged one.
 */
export const SECTOR_BYTES = 512;
/** The first frame follows the header's sector. */
export const FIRST_FRAME_OFFSET = SECTOR_BYTES;

export function alignUp(offset: number): number {
  return Math.ceil(offset / SECTOR_BYTES) * SECTOR_BYTES;
}
/** Hard upper bound on one record's payload: a 500-line sale is ~100 KiB; anything bigger is a bug. */
export const MAX_RECORD_BYTES = 256 * 1024;

const DEVICE_ID = /^[A-Za-z0-9._-]{1,64}$/;
const SEGMENT_NAME = /^(\d{8})\.seg$/;

export interface SegmentHeader {
  version: number;
  deviceId: string;
  epoch: number;
  /** 1-based segment number, also in the file name. */
  index: number;
  /** seq of the first record this segment holds (or will hold). */
  firstSeq: number;
}

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID.test(id);
}

export function isValidEpoch(epoch: number): boolean {
  return Number.isInteger(epoch) && epoch >= 1 && epoch <= 0xffffffff;
}

export function segmentName(index: number): string {
  return `${String(index).padStart(8, '0')}.seg`;
}

export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function encodeHeader(h: SegmentHeader): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(h.version, 8);
  buf.writeUInt32LE(h.epoch, 12);
  buf.writeUInt32LE(h.index, 16);
  buf.writeBigUInt64LE(BigInt(h.firstSeq), 24);
  const id = Buffer.from(h.deviceId, 'latin1');
  buf.writeUInt8(id.length, 32);
  id.copy(buf, 33);
  buf.writeUInt32LE(crc32(buf.subarray(0, HEADER_BYTES - 4)), HEADER_BYTES - 4);
  return buf;
}

export type HeaderResult =
  { ok: true; header: SegmentHeader } | { ok: false; problem: 'short' | 'magic' | 'crc' | 'version' };

export function decodeHeader(buf: Buffer): HeaderResult {
  if (buf.length < HEADER_BYTES) return { ok: false, problem: 'short' };
  if (!buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return { ok: false, problem: 'magic' };
  if (buf.readUInt32LE(HEADER_BYTES - 4) !== crc32(buf.subarray(0, HEADER_BYTES - 4))) {
    return { ok: false, problem: 'crc' };
  }
  const version = buf.readUInt32LE(8);
  if (version !== FORMAT_VERSION) return { ok: false, problem: 'version' };
  const idLength = buf.readUInt8(32);
  return {
    ok: true,
    header: {
      version,
      epoch: buf.readUInt32LE(12),
      index: buf.readUInt32LE(16),
      firstSeq: Number(buf.readBigUInt64LE(24)),
      deviceId: buf.toString('latin1', 33, 33 + idLength),
    },
  };
}

function frameCrc(lengthField: Buffer, payload: Buffer): number {
  return crc32(payload, crc32(lengthField));
}

/**
 * `u32 length | u32 crc32(length ‖ payload) | payload`; a string payload is written as UTF-8. With
 * `padded`, zeros follow up to the next sector boundary (what the journal writes).
 */
export function encodeFrame(payload: Buffer | string, padded = false): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const size = FRAME_OVERHEAD + length;
  const frame = Buffer.alloc(padded ? alignUp(size) : size);
  frame.writeUInt32LE(length, 0);
  if (typeof payload === 'string') frame.write(payload, FRAME_OVERHEAD, 'utf8');
  else payload.copy(frame, FRAME_OVERHEAD);
  frame.writeUInt32LE(frameCrc(frame.subarray(0, 4), frame.subarray(FRAME_OVERHEAD, size)), 4);
  return frame;
}

export type FrameResult =
  | { kind: 'ok'; payload: Buffer; end: number }
  /** fewer bytes remain than the frame needs: a write that never finished */
  | { kind: 'short' }
  /** a zero or oversized length, or a CRC mismatch */
  | { kind: 'bad' };

export function readFrame(buf: Buffer, offset: number): FrameResult {
  if (buf.length - offset < FRAME_OVERHEAD) return { kind: 'short' };
  const length = buf.readUInt32LE(offset);
  if (length === 0 || length > MAX_RECORD_BYTES) return { kind: 'bad' };
  const end = offset + FRAME_OVERHEAD + length;
  if (end > buf.length) return { kind: 'short' };
  const payload = buf.subarray(offset + FRAME_OVERHEAD, end);
  if (buf.readUInt32LE(offset + 4) !== frameCrc(buf.subarray(offset, offset + 4), payload)) {
    return { kind: 'bad' };
  }
  return { kind: 'ok', payload, end };
}

/**
 * Is there a whole, CRC-valid frame at any sector boundary after `from`? A torn tail never has one
 * (only the last unsynced write can be torn), so finding one means bytes that were once durable went bad.
 */
export function findFrameAfter(buf: Buffer, from: number): number | undefined {
  for (let at = alignUp(from); at + FRAME_OVERHEAD < buf.length; at += SECTOR_BYTES) {
    const length = buf.readUInt32LE(at);
    if (length === 0 || length > MAX_RECORD_BYTES || at + FRAME_OVERHEAD + length > buf.length) continue;
    if (readFrame(buf, at).kind === 'ok') return at;
  }
  return undefined;
}
