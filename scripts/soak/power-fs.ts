// A simulated-power file layer for the soak (docs/soak.md): the journal's JournalFs over the real disk,
// in which nothing reaches the disk until it is made durable. Written bytes stay in this process's
// memory until fdatasync; created, renamed and removed names stay there until syncDir of their
// directory. So a SIGKILL of the process is a power cut: what was never synced is gone, as it would be
// from a flash card's page cache. The disk here stands for the flash's durable state.
//
// Torn flushes: fdatasync writes its pages one at a time (4 KiB each, as separate system calls), and
// syncDir applies its directory changes one at a time, in order. A SIGKILL that lands between two
// leaves the flush half done. The soak also arms cuts from the inside: `plan.afterSteps` counts pages,
// truncations and directory changes, and the process kills itself just before that step. With
// `plan.junk`, the 512-byte sector that step was writing turns to junk first (zeros or random bytes,
// half each), as a sector being written when the power goes can.
//
// Directories themselves (mkdirp) are created on the disk at once.
// What this does not model: a disk that reorders the pages of one flush, and sync errors (EIO). The
// in-process crash suite (test/crash, test/support/fault-fs.ts) covers both.
import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { JournalFs, OpenMode } from '../../appliance/journal/fs.js';

/** A file created here and not yet named by a syncDir lives on the disk under this prefix, unseen. */
export const HIDDEN_PREFIX = '.powersim-';
/** Bytes written per step of a flush: a flash page. */
export const PAGE = 4096;
const SECTOR = 512;

export interface PowerPlan {
  /** Cut the power just before the step with this number (1 = the first page, truncation or entry). */
  afterSteps?: number;
  /** Turn the sector being written at the cut into junk first. */
  junk?: boolean;
  /** Which junk, for a replay: zeros for an even seed, else bytes derived from it. Default afterSteps. */
  junkSeed?: number;
  /**
   * A disk that lies: fdatasync returns without writing anything. Only for showing that the soak
   * notices (test/soak); no journal can keep its promises on such a disk.
   */
  lie?: boolean;
}

export interface PowerFsOptions {
  plan?: PowerPlan;
  /** What a cut does; by default the process SIGKILLs itself. Tests pass one that throws. */
  cut?: () => never;
}

type FileOp = { kind: 'write'; at: number; data: Buffer } | { kind: 'truncate'; length: number };

interface Node {
  /** Where the file's durable bytes are on the disk; null once a synced unlink or rename took its name. */
  disk: string | null;
  /** Whether `disk` exists on the disk yet (a new file appears there at its first flush or link). */
  onDisk: boolean;
  /** An open descriptor of the disk file, while the file is open here. */
  fd: number | null;
  openCount: number;
  size: number;
  pending: FileOp[];
}

type DirOp =
  | { kind: 'link'; name: string; node: Node }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'unlink'; name: string };

/** A sector of junk, the same for the same seed: zeros (even) or pseudo-random bytes (odd). */
export function junkSector(seed: number): Buffer {
  if (seed % 2 === 0) return Buffer.alloc(SECTOR);
  const out = Buffer.alloc(SECTOR);
  for (let i = 0; i < SECTOR; i += 32) createHash('sha256').update(`junk:${seed}:${i}`).digest().copy(out, i);
  return out;
}

function errno(code: string, what: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: ${what}`) as NodeJS.ErrnoException;
  err.code = code;
  return err;
}

export class PowerFs implements JournalFs {
  /** What this process sees, where it differs from the disk: a path's file, or null for none. */
  private readonly view = new Map<string, Node | null>();
  /** The node whose durable bytes are at a disk path. */
  private readonly owners = new Map<string, Node>();
  private readonly dirOps = new Map<string, DirOp[]>();
  private readonly fds = new Map<number, Node>();
  private nextFd = 3;
  private readonly boot = randomUUID();
  /** Steps taken so far (pages written, truncations, directory changes). */
  steps = 0;

  constructor(private readonly opts: PowerFsOptions = {}) {}

  // ---- the power ----

  private step(sector?: { fd: number; at: number }): void {
    this.steps++;
    const at = this.opts.plan?.afterSteps;
    if (at === undefined || this.steps < at) return;
    if (this.opts.plan?.junk && sector) {
      const start = Math.floor(sector.at / SECTOR) * SECTOR;
      const junk = junkSector(this.opts.plan.junkSeed ?? at);
      fs.writeSync(sector.fd, junk, 0, SECTOR, start);
    }
    (this.opts.cut ?? (() => process.kill(process.pid, 'SIGKILL') as never))();
    throw new Error('power cut'); // not reached: the process is gone
  }

  // ---- names ----

  private lookup(file: string): Node | 'dir' | null {
    const p = path.resolve(file);
    const seen = this.view.get(p);
    if (seen !== undefined) return seen;
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (st.isDirectory()) return 'dir';
    const node: Node = { disk: p, onDisk: true, fd: null, openCount: 0, size: st.size, pending: [] };
    this.view.set(p, node);
    this.owners.set(p, node);
    return node;
  }

  private fileAt(file: string): Node {
    const node = this.lookup(file);
    if (node === null) throw errno('ENOENT', file);
    if (node === 'dir') throw errno('EISDIR', file);
    return node;
  }

  private queue(dir: string, op: DirOp): void {
    const ops = this.dirOps.get(dir) ?? [];
    ops.push(op);
    this.dirOps.set(dir, ops);
  }

  // ---- the disk side ----

  private diskFd(node: Node): number | null {
    if (node.fd !== null) return node.fd;
    if (!node.disk) return null;
    node.fd = fs.openSync(node.disk, node.onDisk ? 'r+' : 'wx+', 0o600);
    node.onDisk = true;
    return node.fd;
  }

  private releaseDiskFd(node: Node): void {
    if (node.openCount > 0 || node.pending.length || node.fd === null) return;
    fs.closeSync(node.fd);
    node.fd = null;
  }

  /** Moves the bytes at disk path `from` to `to`, as rename(2) would, keeping who owns what right. */
  private diskRename(from: string, to: string): void {
    fs.renameSync(from, to);
    const replaced = this.owners.get(to);
    if (replaced) replaced.disk = null;
    const moved = this.owners.get(from);
    this.owners.delete(from);
    if (moved) {
      moved.disk = to;
      this.owners.set(to, moved);
    }
  }

  private diskUnlink(name: string): void {
    try {
      fs.unlinkSync(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const owner = this.owners.get(name);
    if (owner) owner.disk = null;
    this.owners.delete(name);
  }

  // ---- JournalFs ----

  list(dir: string): string[] {
    const d = path.resolve(dir);
    let names: string[];
    try {
      names = fs.readdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out = new Set<string>();
    for (const name of names) {
      if (!name.startsWith(HIDDEN_PREFIX)) out.add(name);
      else if (!this.owners.has(path.join(d, name))) this.diskUnlink(path.join(d, name)); // an orphan
    }
    for (const [p, node] of this.view) {
      if (path.dirname(p) !== d) continue;
      if (node) out.add(path.basename(p));
      else out.delete(path.basename(p));
    }
    return [...out];
  }

  mkdirp(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
  }

  size(file: string): number {
    const node = this.lookup(file);
    if (node === null) return -1;
    return node === 'dir' ? 0 : node.size;
  }

  readFile(file: string): Buffer {
    const node = this.fileAt(file);
    const out = Buffer.alloc(node.size);
    this.readNode(node, out, 0, node.size);
    return out;
  }

  open(file: string, mode: OpenMode): number {
    const p = path.resolve(file);
    let node: Node;
    if (mode === 'create') {
      if (this.lookup(p) !== null) throw errno('EEXIST', file);
      const hidden = path.join(path.dirname(p), `${HIDDEN_PREFIX}${randomUUID()}`);
      node = { disk: hidden, onDisk: false, fd: null, openCount: 0, size: 0, pending: [] };
      this.owners.set(hidden, node);
      this.view.set(p, node);
      this.queue(path.dirname(p), { kind: 'link', name: p, node });
    } else {
      node = this.fileAt(p);
    }
    node.openCount++;
    const fd = this.nextFd++;
    this.fds.set(fd, node);
    return fd;
  }

  private node(fd: number): Node {
    const node = this.fds.get(fd);
    if (!node) throw errno('EBADF', `fd ${fd}`);
    return node;
  }

  read(fd: number, into: Buffer, position: number, length = into.length): number {
    return this.readNode(this.node(fd), into, position, length);
  }

  private readNode(node: Node, into: Buffer, position: number, length: number): number {
    const n = Math.max(0, Math.min(length, node.size - position));
    into.fill(0, 0, n);
    const dfd = node.onDisk ? this.diskFd(node) : null;
    if (dfd !== null) {
      let done = 0;
      while (done < n) {
        const got = fs.readSync(dfd, into, done, n - done, position + done);
        if (got === 0) break;
        done += got;
      }
      this.releaseDiskFd(node);
    }
    const end = position + n;
    for (const op of node.pending) {
      if (op.kind === 'truncate') {
        if (op.length < end) into.fill(0, Math.max(0, op.length - position), n);
        continue;
      }
      const from = Math.max(op.at, position);
      const to = Math.min(op.at + op.data.length, end);
      if (from < to) op.data.copy(into, from - position, from - op.at, to - op.at);
    }
    return n;
  }

  write(fd: number, data: Buffer, position: number): void {
    const node = this.node(fd);
    node.pending.push({ kind: 'write', at: position, data: Buffer.from(data) });
    node.size = Math.max(node.size, position + data.length);
  }

  truncate(fd: number, length: number): void {
    const node = this.node(fd);
    node.pending.push({ kind: 'truncate', length });
    node.size = length;
  }

  fdatasync(fd: number): void {
    const node = this.node(fd);
    const dfd = this.diskFd(node);
    const ops = node.pending;
    if (this.opts.plan?.lie) return; // kept in memory only, as if written
    node.pending = [];
    if (dfd === null) return; // a file whose name is gone: nothing of it can ever be read again
    for (const op of ops) {
      if (op.kind === 'truncate') {
        this.step();
        fs.ftruncateSync(dfd, op.length);
        continue;
      }
      // Page by page, each a system call of its own: a kill between two leaves the flush torn.
      let at = op.at;
      while (at < op.at + op.data.length) {
        const pageEnd = Math.min((Math.floor(at / PAGE) + 1) * PAGE, op.at + op.data.length);
        this.step({ fd: dfd, at });
        fs.writeSync(dfd, op.data, at - op.at, pageEnd - at, at);
        at = pageEnd;
      }
    }
  }

  close(fd: number): void {
    const node = this.node(fd);
    this.fds.delete(fd);
    node.openCount--;
    this.releaseDiskFd(node);
  }

  rename(from: string, to: string): void {
    const f = path.resolve(from);
    const t = path.resolve(to);
    if (path.dirname(f) !== path.dirname(t)) throw errno('EXDEV', `${from} → ${to}: one directory only`);
    const node = this.fileAt(f);
    this.view.set(t, node);
    this.view.set(f, null);
    this.queue(path.dirname(f), { kind: 'rename', from: f, to: t });
  }

  unlink(file: string): void {
    const p = path.resolve(file);
    this.fileAt(p);
    this.view.set(p, null);
    this.queue(path.dirname(p), { kind: 'unlink', name: p });
  }

  syncDir(dir: string): void {
    const d = path.resolve(dir);
    const ops = this.dirOps.get(d) ?? [];
    this.dirOps.delete(d);
    while (ops.length) {
      const op = ops.shift()!;
      this.step();
      if (op.kind === 'link') {
        const { node } = op;
        if (!node.disk) continue;
        if (!node.onDisk) {
          fs.closeSync(fs.openSync(node.disk, 'wx', 0o600));
          node.onDisk = true;
        }
        this.diskRename(node.disk, op.name);
      } else if (op.kind === 'rename') {
        if (fs.existsSync(op.from)) this.diskRename(op.from, op.to);
      } else {
        this.diskUnlink(op.name);
      }
    }
  }

  /** Every process start is a new boot: the soak starts one only after a power cut. */
  bootId(): string {
    return this.boot;
  }
}
