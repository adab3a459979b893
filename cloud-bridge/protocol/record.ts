// A journal record as both ends of the link see it (wire protocol ◆). The device writes it once to
// flash and sends it as-is; the ledger recomputes the hash to check the chain.
import { createHash, hash as oneShotHash } from 'node:crypto';

/** Whether the wall clock was trusted when the record was written (a Pi has no RTC). */
export type ClockQuality = 'trusted' | 'untrusted';

/** One domain event; the journal only requires a string `type`. */
export interface JournalEvent {
  type: string;
  [field: string]: unknown;
}

export interface JournalRecord {
  /** Per-device, per-epoch, gapless, from 1. */
  seq: number;
  /** Wall-clock milliseconds since the Unix epoch when the record was written. */
  ts: number;
  clock: ClockQuality;
  prevHash: string;
  hash: string;
  events: JournalEvent[];
}

export type RecordBody = Omit<JournalRecord, 'prevHash' | 'hash'>;

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * RFC 8785 (JCS) canonical JSON: object keys sorted by UTF-16 code units, no whitespace, strings and
 * numbers as ECMAScript's JSON.stringify writes them; NaN, Infinity and lone surrogates refused.
 * Checked against the `canonicalize` reference implementation in the tests; written here because it
 * is on every commit's path and the reference one costs ~30 µs a record (decision 0002).
 *
 * Fastest path: a value whose objects already list their keys in JCS order (a record parsed from JCS
 * bytes, as the ledger receives them) is written by plain JSON.stringify, after one walk that checks the
 * order and the values: ~6× cheaper than the next path, whose property list takes V8 off its fast
 * serialiser.
 * Fast path: one walk checks the values and gathers every object key; JSON.stringify with the sorted
 * keys as its property list then writes each object's members in that order, natively. Objects that
 * are not plain data, or a `__proto__` key, take the straightforward recursive path instead.
 */
export function canonicalJson(value: unknown): string {
  if (inCanonicalOrder(value) && !('toJSON' in Object.prototype)) {
    const out = JSON.stringify(value);
    if (out === undefined) throw new TypeError(`a ${typeof value} has no JSON form`);
    return out;
  }
  const keys = new Set<string>();
  if (prototypePolluted() || !gatherKeys(value, keys)) return canonicalJsonSlow(value);
  const out = JSON.stringify(value, [...keys].sort());
  if (out === undefined) throw new TypeError(`a ${typeof value} has no JSON form`);
  return out;
}

/**
 * True when JSON.stringify alone writes `value` as JCS: plain data whose objects' own enumerable keys
 * already run in ascending UTF-16 order, finite numbers, well-formed strings. False sends the value down
 * the other paths, which also raise the errors (a lone surrogate, NaN).
 */
function inCanonicalOrder(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
      return value.isWellFormed();
    case 'number':
      return Number.isFinite(value);
    case 'boolean':
      return true;
    case 'object': {
      if (value === null) return true;
      if (Array.isArray(value)) {
        for (const item of value) if (!inCanonicalOrder(item)) return false;
        return true;
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return false;
      const obj = value as Record<string, unknown>;
      let prev: string | undefined;
      for (const key of Object.keys(obj)) {
        if ((prev !== undefined && !(prev < key)) || key === 'toJSON' || !key.isWellFormed()) return false;
        prev = key;
        if (!inCanonicalOrder(obj[key])) return false;
      }
      return true;
    }
    default:
      return false; // undefined, functions, symbols, bigints: the other paths decide
  }
}

/** Checks values JCS refuses and collects keys; false when the fast path cannot be trusted. */
function gatherKeys(value: unknown, keys: Set<string>): boolean {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new TypeError('a string holds a lone surrogate');
      return true;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return true;
    case 'object': {
      if (value === null) return true;
      if (Array.isArray(value)) {
        for (const item of value) if (!gatherKeys(item, keys)) return false;
        return true;
      }
      // Plain data only: with another prototype, JSON.stringify's property list would read inherited
      // members, and toJSON may return anything.
      if (Object.getPrototypeOf(value) !== Object.prototype) return false;
      const obj = value as Record<string, unknown>;
      const own = Object.getOwnPropertyNames(obj);
      let enumerable = 0;
      for (const key in obj) {
        if (key === '__proto__' || key === 'toJSON' || !key.isWellFormed()) return false;
        enumerable++;
        keys.add(key);
        if (!gatherKeys(obj[key], keys)) return false;
      }
      // A non-enumerable own property would be read through the property list.
      return enumerable === own.length;
    }
    default:
      return true; // booleans; undefined, functions and symbols are left out as JSON.stringify does
  }
}

function canonicalJsonSlow(value: unknown): string {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new TypeError('a string holds a lone surrogate');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += isAbsent(value[i]) ? 'null' : canonicalJsonSlow(value[i]);
        }
        return out + ']';
      }
      const toJSON = (value as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return canonicalJsonSlow(toJSON.call(value));
      const obj = value as Record<string, unknown>;
      let out = '{';
      for (const key of Object.keys(obj).sort()) {
        const v = obj[key];
        if (isAbsent(v)) continue;
        if (out.length > 1) out += ',';
        out += canonicalJsonSlow(key) + ':' + canonicalJsonSlow(v);
      }
      return out + '}';
    }
    default:
      throw new TypeError(`a ${typeof value} has no JSON form`);
  }
}

/** Something enumerable on Object.prototype would be read from every object through the property list. */
function prototypePolluted(): boolean {
  for (const _ in Object.prototype) return true;
  return false;
}

/** What JSON.stringify leaves out of objects (and writes as null in arrays). */
function isAbsent(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/**
 * hash = SHA-256(prevHash ‖ JCS({seq, ts, clock, events})), lower-case hex. Any JCS implementation
 * on the ledger side computes the same bytes.
 */
export function recordHash(prevHash: string, body: RecordBody): string {
  // Keys in JCS order, so a body whose events are in order takes canonicalJson's fastest path.
  return sha256(
    prevHash,
    canonicalJson({ clock: body.clock, events: body.events, seq: body.seq, ts: body.ts }),
  );
}

/**
 * Build a record and its on-flash payload in one pass. The payload is the JCS form of the whole record
 * (keys clock, events, hash, prevHash, seq, ts), so the hashed body is the payload with its
 * `"hash":…,"prevHash":…` members cut out: recovery checks a hash without re-serialising.
 */
export function sealRecord(prevHash: string, body: RecordBody): { record: JournalRecord; payload: string } {
  if (!HEX64.test(prevHash)) throw new TypeError('prevHash must be 64 lower-case hex digits');
  const head = `{"clock":${canonicalJson(body.clock)},"events":${canonicalJson(body.events)}`;
  const tail = `"seq":${canonicalJson(body.seq)},"ts":${canonicalJson(body.ts)}}`;
  // One-shot hashing: on the commit path, right after an fdatasync, createHash costs ~3× more.
  const hash = oneShotHash('sha256', `${prevHash}${head},${tail}`, 'hex');
  const record = { seq: body.seq, ts: body.ts, clock: body.clock, prevHash, hash, events: body.events };
  return { record, payload: `${head},"hash":"${hash}","prevHash":"${prevHash}",${tail}` };
}

const HASH_MEMBERS = Buffer.from(',"hash":"', 'latin1');
/** `,"hash":"` + 64 + `","prevHash":"` + 64 + `",` */
const HASH_MEMBERS_LENGTH = 9 + 64 + 14 + 64 + 2;

/**
 * Check a sealed payload's hash from its bytes: the hash and prevHash it states, and whether the hash
 * matches the body. Returns undefined when the payload is not laid out as sealRecord writes it.
 */
export function checkSealedPayload(
  payload: Buffer,
): { hash: string; prevHash: string; ok: boolean } | undefined {
  const at = payload.lastIndexOf(HASH_MEMBERS);
  if (at < 0 || at + HASH_MEMBERS_LENGTH > payload.length) return undefined;
  const members = payload.toString('latin1', at, at + HASH_MEMBERS_LENGTH);
  const hash = members.slice(9, 73);
  const prevHash = members.slice(87, 151);
  if (members.slice(73, 87) !== '","prevHash":"' || members.slice(151) !== '",') return undefined;
  const digest = sha256(prevHash, payload.subarray(0, at), ',', payload.subarray(at + HASH_MEMBERS_LENGTH));
  return { hash, prevHash, ok: digest === hash };
}

/** The chain's anchor: the prevHash of seq 1, distinct per device and epoch. */
export function genesisHash(deviceId: string, epoch: number): string {
  return sha256(`pos/v1 genesis ${deviceId} ${epoch}`);
}

/** The record's identity in the books: deviceId:epoch:seq. */
export function dedupId(deviceId: string, epoch: number, seq: number): string {
  return `${deviceId}:${epoch}:${seq}`;
}

/** A short form of a chain hash for receipts and screens. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}
