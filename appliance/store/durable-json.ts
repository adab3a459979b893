// Small durable JSON documents (catalog cache, cashier list, device settings) kept with lowdb through an
// adapter that survives a power cut: the file always holds a complete document, the last acknowledged
// one or the one being written, and the one before it is kept as `<file>.prev` for when the medium
// damages the file. lowdb's own file adapter never fsyncs (a power cut can leave a 0-byte file).
//
// One writer per file: the adapter assumes no other process or adapter writes the same path.
import * as path from 'node:path';
import { LowSync, type SyncAdapter } from 'lowdb';
import { RegisterError } from '../errors.js';
import { ensureDurableDir, nodeFs, writeFileAtomic, type JournalFs } from '../journal/fs.js';

/**
 * 8 MiB: the largest document read or written. A catalog cache of some thousand products is well
 * under 1 MiB; the bound stops a damaged or runaway file from being parsed into memory whole.
 */
export const DEFAULT_MAX_BYTES = 8 * 1024 * 1024;

/** 200 characters: enough of a parser's or validator's message to act on, short enough for one log line. */
const REASON_MAX_CHARS = 200;

export interface DurableJsonOptions<T> {
  /** The file system; the real one unless a test passes a fault-injecting one. */
  fs?: JournalFs;
  /** Checks (and may convert) a parsed document, throwing when it is not one; e.g. a zod schema's parse. */
  validate?: (data: unknown) => T;
  /** The largest document read or written, in bytes. */
  maxBytes?: number;
  /** Told when `read()` had to use `<file>.prev` because the file itself is missing or unusable. */
  onFallback?: (reason: string) => void;
}

/** What one copy on disk holds. */
type Copy<T> = { kind: 'ok'; data: T; bytes: Buffer } | { kind: 'missing' } | { kind: 'bad'; reason: string };

/**
 * lowdb's SyncAdapter over a JournalFs.
 *
 * write(): the file's current content, when it is a good document, is first copied to `<file>.prev`
 * with writeFileAtomic; then the new content replaces the file with writeFileAtomic (temp → fdatasync
 * → rename → fsync dir). We copy rather than rename the file to `.prev` because a rename would leave a
 * moment, between "file → .prev" and "temp → file", in which the file does not exist: recovery would
 * then depend on the fallback path after every ill-timed power cut, and a fallback would no longer mean
 * damage. With the copy, each of the two steps is an atomic replace of a file that stays complete:
 *   - cut during the copy: the file holds the acknowledged document; `.prev` the older or the same one;
 *   - cut during the replace: the file holds the acknowledged or the new document; `.prev` the former;
 *   - cut after the final fsync of the directory: the write was acknowledged and holds.
 * So the file is never missing, empty or torn because of a power cut, and there is never a moment with
 * neither copy. A file that is already bad is not copied: `.prev` keeps the last good document. The
 * price is a second fdatasync and directory fsync per write, which these rarely written files can pay.
 * Left-over `*.tmp` files from a cut are ignored by read() and removed by the next write.
 *
 * read(), as a decision table:
 *   file     .prev     → result
 *   good     any       → the file's document
 *   missing  missing   → null (never written)
 *   missing  good      → `.prev`'s document, reported to onFallback
 *   bad      good      → `.prev`'s document, reported to onFallback
 *   missing  bad       → STORE_UNREADABLE
 *   bad      missing   → STORE_UNREADABLE (null would let defaults overwrite a damaged document)
 *   bad      bad       → STORE_UNREADABLE
 * "bad" is: empty, over maxBytes, unreadable, not JSON, JSON null, or refused by the validator.
 * read() changes nothing on disk; the next write() replaces the bad file.
 *
 * The file's directory and any missing parents are created by the first write(), each level made
 * durable by an fsync of its parent, so the first acknowledged write survives a power cut too.
 */
export class DurableJsonAdapter<T> implements SyncAdapter<T> {
  readonly file: string;
  readonly prevFile: string;
  private readonly io: JournalFs;
  private readonly validate: ((data: unknown) => T) | undefined;
  private readonly maxBytes: number;
  private readonly onFallback: (reason: string) => void;
  private dirReady = false;

  constructor(file: string, opts: DurableJsonOptions<T> = {}) {
    this.file = file;
    this.prevFile = `${file}.prev`;
    this.io = opts.fs ?? nodeFs;
    this.validate = opts.validate;
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.onFallback = opts.onFallback ?? (() => {});
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < 1)
      throw new RangeError(`maxBytes must be a positive integer, not ${String(opts.maxBytes)}`);
  }

  read(): T | null {
    const main = this.inspect(this.file);
    if (main.kind === 'ok') return main.data;
    const prev = this.inspect(this.prevFile);
    if (main.kind === 'missing' && prev.kind === 'missing') return null;
    const mainWhy = main.kind === 'missing' ? 'is missing' : main.reason;
    if (prev.kind === 'ok') {
      this.onFallback(`${this.file} ${mainWhy}; using ${this.prevFile}`);
      return prev.data;
    }
    const prevWhy = prev.kind === 'missing' ? 'is missing' : prev.reason;
    throw new RegisterError(
      'STORE_UNREADABLE',
      `${this.file} cannot be read back: it ${mainWhy}, and its previous copy ${this.prevFile} ${prevWhy}`,
      { file: this.file, reason: mainWhy, prevReason: prevWhy },
    );
  }

  write(data: T): void {
    const bytes = this.encode(data);
    try {
      this.ensureDir();
      const current = this.inspect(this.file);
      if (current.kind === 'ok') writeFileAtomic(this.io, this.prevFile, current.bytes);
      writeFileAtomic(this.io, this.file, bytes);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException)?.code;
      throw new RegisterError(
        'STORE_WRITE_FAILED',
        `${this.file} could not be written (${errno ?? clip(err)}); the write is not acknowledged`,
        { file: this.file, errno },
        err,
      );
    }
  }

  /** JSON that the validator would accept on read, within the size bound; checked before any disk I/O. */
  private encode(data: T): Buffer {
    let json: string | undefined;
    try {
      // Indented, so an operator can read and diff the file on the appliance.
      json = JSON.stringify(data, null, 2);
    } catch (err) {
      throw new RegisterError(
        'STORE_BAD_DOCUMENT',
        `the document for ${this.file} cannot be serialised: ${clip(err)}`,
        { file: this.file },
        err,
      );
    }
    if (json === undefined || json === 'null')
      throw new RegisterError('STORE_BAD_DOCUMENT', `the document for ${this.file} is empty`, {
        file: this.file,
      });
    const bytes = Buffer.from(`${json}\n`, 'utf8');
    if (bytes.length > this.maxBytes)
      throw new RegisterError(
        'STORE_TOO_LARGE',
        `the document for ${this.file} is ${bytes.length} bytes, over the ${this.maxBytes}-byte bound; nothing was written`,
        { file: this.file, bytes: bytes.length, maxBytes: this.maxBytes },
      );
    // Never write what read() would refuse: it would silently fall back to the older copy later.
    if (this.validate) {
      try {
        this.validate(JSON.parse(json));
      } catch (err) {
        throw new RegisterError(
          'STORE_BAD_DOCUMENT',
          `the document for ${this.file} is refused by its validator: ${clip(err)}; nothing was written`,
          { file: this.file },
          err,
        );
      }
    }
    return bytes;
  }

  private inspect(file: string): Copy<T> {
    let bytes: Buffer;
    try {
      const size = this.io.size(file);
      if (size < 0) return { kind: 'missing' };
      if (size > this.maxBytes) return { kind: 'bad', reason: this.tooLarge(size) };
      bytes = this.io.readFile(file);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException)?.code;
      if (errno === 'ENOENT') return { kind: 'missing' };
      return { kind: 'bad', reason: `is unreadable (${errno ?? clip(err)})` };
    }
    if (bytes.length === 0) return { kind: 'bad', reason: 'is empty (0 bytes)' };
    if (bytes.length > this.maxBytes) return { kind: 'bad', reason: this.tooLarge(bytes.length) };
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      return { kind: 'bad', reason: `is not valid JSON (${clip(err)})` };
    }
    if (parsed === null) return { kind: 'bad', reason: 'holds null, not a document' };
    if (!this.validate) return { kind: 'ok', data: parsed as T, bytes };
    try {
      return { kind: 'ok', data: this.validate(parsed), bytes };
    } catch (err) {
      return { kind: 'bad', reason: `is refused by its validator (${clip(err)})` };
    }
  }

  private tooLarge(size: number): string {
    return `is ${size} bytes, over the ${this.maxBytes}-byte bound`;
  }

  /** Create missing directories durably, once per adapter. */
  private ensureDir(): void {
    if (this.dirReady) return;
    ensureDurableDir(this.io, path.dirname(this.file));
    this.dirReady = true;
  }
}

/**
 * A lowdb database over a DurableJsonAdapter, already read: `data` is the stored document, or a copy of
 * `defaultData` when none was ever written (nothing is written until the first `write()`/`update()`).
 */
export function openDurableJson<T>(
  file: string,
  opts: DurableJsonOptions<T> & { defaultData: T },
): LowSync<T> {
  const { defaultData, ...adapterOpts } = opts;
  // A copy, so the caller's defaults are not mutated through db.data.
  const db = new LowSync<T>(new DurableJsonAdapter<T>(file, adapterOpts), structuredClone(defaultData));
  db.read();
  return db;
}

function clip(err: unknown): string {
  const text = String((err as Error)?.message ?? err).replace(/\s+/g, ' ');
  return text.length > REASON_MAX_CHARS ? `${text.slice(0, REASON_MAX_CHARS)}…` : text;
}
