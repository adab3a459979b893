// An in-memory file system that remembers what was made durable, after SQLite's test6 and RocksDB's
// fault_injection_fs. fdatasync makes a file's bytes durable; syncDir makes a directory's entries
// durable. crash() is a power cut: each file keeps its synced bytes and every unsynced write is
// dropped, kept, kept in part, or kept in part followed by a garbage sector; each directory keeps its
// synced entries plus a random prefix of the changes made since (a journaling file system commits
// metadata in order), so files created, renamed or removed since the last syncDir may or may not be.
// A failed fdatasync (injected EIO) behaves as Linux does: the unwritten pages are marked clean, so
// reads still return the new bytes but no later fdatasync will ever write them.
import * as path from 'node:path/posix';
import type { JournalFs, OpenMode } from '../../appliance/journal/fs.js';
import type { Rng } from './rng.js';

type FileOp = { kind: 'write'; at: number; data: Buffer } | { kind: 'truncate'; length: number };
interface FileNode {
  kind: 'file';
  current: Buffer;
  durable: Buffer;
  pending: FileOp[];
}
type DirOp =
  | { kind: 'link'; name: string; node: Node }
  | { kind: 'unlink'; name: string }
  | { kind: 'rename'; from: string; to: string };
interface DirNode {
  kind: 'dir';
  current: Map<string, Node>;
  durable: Map<string, Node>;
  pending: DirOp[];
}
type Node = FileNode | DirNode;

export class PowerCut extends Error {
  readonly code = 'EPOWERCUT';
  constructor() {
    super('power cut');
  }
}

function errno(code: string, what: string, syscall = 'fault-fs'): NodeJS.ErrnoException {
  const err = new Error(`${code}: ${what}`) as NodeJS.ErrnoException;
  err.code = code;
  err.syscall = syscall;
  return err;
}

const SECTOR = 512;

export type FaultOp =
  'write' | 'fdatasync' | 'truncate' | 'rename' | 'unlink' | 'syncDir' | 'open' | 'mkdirp';

export class FaultFs implements JournalFs {
  private root: DirNode = { kind: 'dir', current: new Map(), durable: new Map(), pending: [] };
  private fds = new Map<number, { node: FileNode; writable: boolean }>();
  private nextFd = 3;
  private opsUntilCut = Infinity;
  private dead = false;
  private injected: { op: FaultOp; code: string }[] = [];
  /** Counts of operations, for tests that crash at "any step". */
  ops = 0;
  /** Total bytes the disk holds; a write past it fails with ENOSPC after writing what fits. */
  capacityBytes = Infinity;

  constructor(private readonly rng: Rng) {}

  /** Cut the power when the n-th mutating operation from now is attempted (it does not happen). */
  cutPowerAfter(n: number): void {
    this.opsUntilCut = n;
  }

  /** Make the next `op` fail with an errno code (EIO, ENOSPC…), once. */
  failNext(op: FaultOp, code: string): void {
    this.injected.push({ op, code });
  }

  /** Withdraw any armed power cut, injected error and capacity limit. */
  clearFaults(): void {
    this.opsUntilCut = Infinity;
    this.injected = [];
    this.capacityBytes = Infinity;
  }

  get isDead(): boolean {
    return this.dead;
  }

  private boots = 1;

  bootId(): string {
    return `boot-${this.boots}`;
  }

  /** The process dies but the machine does not: the page cache (written, unsynced data) survives. */
  kill(): void {
    this.fds.clear();
    this.dead = false;
    this.clearFaults();
  }

  /** The power cut: keep what was durable, mangle the rest, forget every open file; a new boot. */
  crash(): void {
    this.boots++;
    this.crashDir(this.root);
    this.fds.clear();
    this.dead = false;
    this.clearFaults();
  }

  private crashDir(dir: DirNode): void {
    const entries = new Map(dir.durable);
    const keep = this.rng.int(0, dir.pending.length);
    for (const op of dir.pending.slice(0, keep)) applyDirOp(entries, op);
    dir.current = entries;
    dir.durable = new Map(entries);
    dir.pending = [];
    for (const node of entries.values()) {
      if (node.kind === 'dir') this.crashDir(node);
      else this.crashFile(node);
    }
  }

  private crashFile(file: FileNode): void {
    let data: Buffer = Buffer.from(file.durable);
    for (const op of file.pending) {
      if (op.kind === 'truncate') {
        if (this.rng.chance(0.5)) data = resize(data, op.length);
        continue;
      }
      const fate = this.rng.int(0, 3);
      if (fate === 0) continue; // dropped
      if (fate < 2) {
        data = writeAt(data, op.at, op.data);
        continue;
      }
      const prefix = this.rng.int(0, op.data.length - 1);
      data = writeAt(data, op.at, op.data.subarray(0, prefix));
      if (fate === 3) {
        // The sector being written when the power went comes back as junk, all of it: including any
        // bytes of it before this write began, which is how an unaligned append can damage the record
        // before it.
        const sector = Math.floor((op.at + prefix) / SECTOR) * SECTOR;
        const junk = this.rng.chance(0.5) ? Buffer.alloc(SECTOR) : this.rng.bytes(SECTOR);
        data = writeAt(data, sector, junk);
      }
    }
    file.current = data;
    file.durable = Buffer.from(data);
    file.pending = [];
  }

  // ---- the JournalFs interface ----

  list(dir: string): string[] {
    this.alive();
    const node = this.lookup(dir);
    return node?.kind === 'dir' ? [...node.current.keys()] : [];
  }

  mkdirp(dir: string): void {
    let node = this.root;
    for (const part of parts(dir)) {
      let next = node.current.get(part);
      if (!next) {
        this.step('mkdirp');
        next = { kind: 'dir', current: new Map(), durable: new Map(), pending: [] };
        node.current.set(part, next);
        node.pending.push({ kind: 'link', name: part, node: next });
      }
      if (next.kind !== 'dir') throw errno('ENOTDIR', dir);
      node = next;
    }
  }

  size(file: string): number {
    this.alive();
    const node = this.lookup(file);
    if (!node) return -1;
    return node.kind === 'file' ? node.current.length : 0;
  }

  readFile(file: string): Buffer {
    this.alive();
    const node = this.lookup(file);
    if (!node) throw errno('ENOENT', file);
    if (node.kind !== 'file') throw errno('EISDIR', file);
    return Buffer.from(node.current);
  }

  open(file: string, mode: OpenMode): number {
    const [dir, name] = this.parent(file);
    let node = dir.current.get(name);
    if (mode === 'create') {
      this.step('open');
      if (node) throw errno('EEXIST', file);
      node = { kind: 'file', current: Buffer.alloc(0), durable: Buffer.alloc(0), pending: [] };
      dir.current.set(name, node);
      dir.pending.push({ kind: 'link', name, node });
    } else {
      this.alive();
    }
    if (!node) throw errno('ENOENT', file);
    if (node.kind !== 'file') throw errno('EISDIR', file);
    const fd = this.nextFd++;
    this.fds.set(fd, { node, writable: mode !== 'read' });
    return fd;
  }

  read(fd: number, into: Buffer, position: number, length = into.length): number {
    this.alive();
    const { node } = this.handle(fd);
    const n = Math.max(0, Math.min(length, node.current.length - position));
    node.current.copy(into, 0, position, position + n);
    return n;
  }

  write(fd: number, data: Buffer, position: number): void {
    const h = this.handle(fd);
    this.step('write');
    if (!h.writable) throw errno('EBADF', 'not open for writing');
    const growth = Math.max(0, position + data.length - h.node.current.length);
    const room = this.capacityBytes - this.usedBytes();
    let bytes = data;
    if (growth > room) bytes = data.subarray(0, Math.max(0, data.length - (growth - room)));
    if (bytes.length) {
      const copy = Buffer.from(bytes);
      h.node.current = writeAt(h.node.current, position, copy);
      h.node.pending.push({ kind: 'write', at: position, data: copy });
    }
    if (bytes.length < data.length) throw errno('ENOSPC', 'no space left on device');
  }

  fdatasync(fd: number): void {
    const h = this.handle(fd);
    try {
      this.step('fdatasync');
    } catch (err) {
      if (!(err instanceof PowerCut)) h.node.pending = [];
      throw err;
    }
    h.node.durable = Buffer.from(h.node.current);
    h.node.pending = [];
  }

  truncate(fd: number, length: number): void {
    const h = this.handle(fd);
    this.step('truncate');
    h.node.current = resize(h.node.current, length);
    h.node.pending.push({ kind: 'truncate', length });
  }

  close(fd: number): void {
    this.fds.delete(fd);
  }

  rename(from: string, to: string): void {
    const [dirA, a] = this.parent(from);
    const [dirB, b] = this.parent(to);
    this.step('rename');
    if (dirA !== dirB) throw errno('EXDEV', 'rename across directories is not modelled');
    if (!dirA.current.has(a)) throw errno('ENOENT', from);
    applyDirOp(dirA.current, { kind: 'rename', from: a, to: b });
    dirA.pending.push({ kind: 'rename', from: a, to: b });
  }

  unlink(file: string): void {
    const [dir, name] = this.parent(file);
    this.step('unlink');
    if (!dir.current.has(name)) throw errno('ENOENT', file);
    dir.current.delete(name);
    dir.pending.push({ kind: 'unlink', name });
  }

  syncDir(dirPath: string): void {
    const dir = this.lookup(dirPath);
    this.step('syncDir');
    if (!dir || dir.kind !== 'dir') throw errno('ENOENT', dirPath);
    dir.durable = new Map(dir.current);
    dir.pending = [];
  }

  // ---- inspection for tests ----

  /** Bytes of every file, as the program sees them now. */
  usedBytes(): number {
    let total = 0;
    const walk = (d: DirNode) => {
      for (const n of d.current.values()) {
        if (n.kind === 'dir') walk(n);
        else total += n.current.length;
      }
    };
    walk(this.root);
    return total;
  }

  /** Overwrite bytes of a file as if the medium changed them (for corruption tests); durable at once. */
  corrupt(file: string, at: number, bytes: Buffer): void {
    const node = this.lookup(file);
    if (!node || node.kind !== 'file') throw errno('ENOENT', file);
    node.current = writeAt(node.current, at, bytes);
    node.durable = Buffer.from(node.current);
  }

  /** Create or replace a file, durable at once (for setting up a test's disk). */
  put(file: string, data: Buffer): void {
    this.mkdirp(path.dirname(file));
    const [dir, name] = this.parent(file);
    const node: FileNode = {
      kind: 'file',
      current: Buffer.from(data),
      durable: Buffer.from(data),
      pending: [],
    };
    dir.current.set(name, node);
    dir.durable.set(name, node);
    this.syncAllDirs(this.root);
  }

  private syncAllDirs(d: DirNode): void {
    d.durable = new Map(d.current);
    d.pending = [];
    for (const n of d.current.values()) if (n.kind === 'dir') this.syncAllDirs(n);
  }

  // ---- internals ----

  private alive(): void {
    if (this.dead) throw new PowerCut();
  }

  private step(op: FaultOp): void {
    this.alive();
    this.ops++;
    if (--this.opsUntilCut <= 0) {
      this.dead = true;
      throw new PowerCut();
    }
    const i = this.injected.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.injected.splice(i, 1);
      throw errno(f!.code, `injected on ${op}`, op);
    }
  }

  private handle(fd: number) {
    this.alive();
    const h = this.fds.get(fd);
    if (!h) throw errno('EBADF', `fd ${fd}`);
    return h;
  }

  private lookup(p: string): Node | undefined {
    let node: Node = this.root;
    for (const part of parts(p)) {
      if (node.kind !== 'dir') return undefined;
      const next: Node | undefined = node.current.get(part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  private parent(p: string): [DirNode, string] {
    this.alive();
    const dir = this.lookup(path.dirname(p));
    if (!dir || dir.kind !== 'dir') throw errno('ENOENT', path.dirname(p));
    return [dir, path.basename(p)];
  }
}

function parts(p: string): string[] {
  return path.resolve('/', p).split('/').filter(Boolean);
}

function applyDirOp(entries: Map<string, Node>, op: DirOp): void {
  if (op.kind === 'link') entries.set(op.name, op.node);
  else if (op.kind === 'unlink') entries.delete(op.name);
  else {
    const node = entries.get(op.from);
    if (!node) return;
    entries.delete(op.from);
    entries.set(op.to, node);
  }
}

function resize(data: Buffer, length: number): Buffer {
  if (length <= data.length) return Buffer.from(data.subarray(0, length));
  return Buffer.concat([data, Buffer.alloc(length - data.length)]);
}

function writeAt(data: Buffer, at: number, bytes: Buffer): Buffer {
  const out = at + bytes.length > data.length ? resize(data, at + bytes.length) : Buffer.from(data);
  bytes.copy(out, at);
  return out;
}
