// The one narrow door through which the journal touches storage. Everything is synchronous on
// purpose: a command is acknowledged only after its fdatasync returns, and a synchronous path has
// no interleavings to reason about. Tests pass a fault-injecting implementation instead.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type OpenMode =
  /** read only */
  | 'read'
  /** read and write an existing file */
  | 'update'
  /** create a new file, failing if one exists */
  | 'create';

export interface JournalFs {
  /** Entry names in a directory; [] when it does not exist. */
  list(dir: string): string[];
  /** Create a directory and its parents; durable only after syncDir of the parent. */
  mkdirp(dir: string): void;
  /** Size in bytes, or -1 when the file does not exist. */
  size(file: string): number;
  readFile(file: string): Buffer;
  open(file: string, mode: OpenMode): number;
  /** Read up to length bytes at position; returns the count read (short at end of file). */
  read(fd: number, into: Buffer, position: number, length?: number): number;
  /** Write all of data at position (looping over short writes). Not durable until fdatasync. */
  write(fd: number, data: Buffer, position: number): void;
  /** Flush data and the size needed to read it back. Throws on an I/O error, which is fatal. */
  fdatasync(fd: number): void;
  truncate(fd: number, length: number): void;
  close(fd: number): void;
  /** Atomic rename; durable only after syncDir. */
  rename(from: string, to: string): void;
  unlink(file: string): void;
  /** Make a directory's entries (creations, renames, removals) durable. */
  syncDir(dir: string): void;
  /** Identifies the current boot (the page cache's lifetime), when the file system can tell. */
  bootId?(): string;
}

let bootId: string | undefined;

export const nodeFs: JournalFs = {
  list(dir) {
    try {
      return fs.readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  },
  mkdirp(dir) {
    fs.mkdirSync(dir, { recursive: true });
  },
  size(file) {
    try {
      return fs.statSync(file).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
      throw err;
    }
  },
  readFile(file) {
    return fs.readFileSync(file);
  },
  open(file, mode) {
    const flags = mode === 'read' ? 'r' : mode === 'update' ? 'r+' : 'wx+';
    return fs.openSync(file, flags, 0o600);
  },
  read(fd, into, position, length = into.length) {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, into, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  },
  write(fd, data, position) {
    let done = 0;
    while (done < data.length) {
      done += fs.writeSync(fd, data, done, data.length - done, position + done);
    }
  },
  fdatasync(fd) {
    fs.fdatasyncSync(fd);
  },
  truncate(fd, length) {
    fs.ftruncateSync(fd, length);
  },
  close(fd) {
    fs.closeSync(fd);
  },
  rename(from, to) {
    fs.renameSync(from, to);
  },
  unlink(file) {
    fs.unlinkSync(file);
  },
  bootId() {
    try {
      bootId ??= fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootId = 'unknown';
    }
    return bootId;
  },
  syncDir(dir) {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
};

/**
 * Replace a small file atomically and durably: temp → fdatasync → rename → fsync dir.
 * A power cut leaves either the old or the new content, never a torn or empty file.
 */
export function writeFileAtomic(
  io: JournalFs,
  file: string,
  data: Buffer,
  /** Called with the synced temp file before it takes the name (to set its mode, say). */
  beforeRename?: (tmp: string) => void,
): void {
  const dir = path.dirname(file);
  const tmp = `${file}.tmp`;
  if (io.size(tmp) >= 0) io.unlink(tmp);
  const fd = io.open(tmp, 'create');
  try {
    io.write(fd, data, 0);
    io.fdatasync(fd);
  } finally {
    io.close(fd);
  }
  beforeRename?.(tmp);
  io.rename(tmp, file);
  io.syncDir(dir);
}

/** Create a directory durably: each missing level is made and its parent's entry fsync'd. */
export function ensureDurableDir(io: JournalFs, dir: string): void {
  if (io.size(dir) >= 0) return;
  const parent = path.dirname(dir);
  if (parent !== dir) ensureDurableDir(io, parent);
  io.mkdirp(dir);
  io.syncDir(parent);
}
