// First-boot provisioning: read the files on the FAT boot partition, check them completely, and only
// then install them on the data partition, once. The order of the steps is what makes a crash at any
// point harmless (a re-run finishes the job):
//
//   step                                   a crash after it leaves             the re-run
//   0 read + validate everything           nothing changed                     starts over
//   1 machine-id (only if none yet)        a machine-id                        keeps it
//   1b systemd.machine_id= in cmdline.txt  the boot partition names it          leaves it (also when
//                                                                              the stamp matches)
//   2 tls/ files, cashier seed, config     some files new, others old          rewrites them, same bytes
//   3 time zone (<etc>/timezone, localtime) likewise                           likewise
//   4 the applied stamp (sha256 of input)  all of the above, durable           sees the stamp: goes to 5
//   5 key and token removed from the FAT   done                                nothing to do
//
// Every file is replaced atomically and durably (temp → fdatasync → rename → fsync dir), so a power
// cut leaves the old or the new version, never a torn one. The stamp comes after everything it vouches
// for is durable, and the secrets leave the boot partition only after the stamp is durable: a re-run
// that finds the stamp no longer needs them; one that does not find it still has them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ensureDurableDir, nodeFs, writeFileAtomic, type JournalFs } from '../journal/fs.js';
import {
  BOOT_FILES,
  BOOT_FOLDER,
  MAX_FILE_BYTES,
  ProvisionError,
  provisioningHash,
  validateProvisioning,
  type ProvisionFiles,
  type Provisioning,
} from './format.js';

/** The journal's narrow file interface plus what /etc needs: a symlink and a file mode. */
export interface ProvisionFs extends JournalFs {
  /** Create a symbolic link at `link` pointing to `target`; fails if `link` exists. */
  symlink(target: string, link: string): void;
  /** The target of a symbolic link; undefined when `link` is missing or not a link. */
  readlink(link: string): string | undefined;
  chmod(file: string, mode: number): void;
}

export const nodeProvisionFs: ProvisionFs = {
  ...nodeFs,
  symlink(target, link) {
    fs.symlinkSync(target, link);
  },
  readlink(link) {
    try {
      return fs.readlinkSync(link);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EINVAL') return undefined;
      throw err;
    }
  },
  chmod(file, mode) {
    fs.chmodSync(file, mode);
  },
};

/** Where things go on the data partition (relative to --data). */
export const DATA_FILES = {
  /** registerd's configuration (`registerd --config <data>/registerd.json`). */
  config: 'registerd.json',
  /** The applied stamp: which provisioning is installed. */
  stamp: 'provisioned.json',
  /** systemd's machine id for this register, generated once (bound over /etc/machine-id). */
  machineId: 'machine-id',
  tlsDir: 'tls',
  ca: 'tls/ca.crt',
  cert: 'tls/device.crt',
  key: 'tls/device.key',
  token: 'tls/enrolment.token',
  /** The initial manager, as registerd's cashier seed. */
  cashiersSeed: 'provision/cashiers.json',
} as const;

const SECRET_MODE = 0o600;
/** systemd's machine-id and /etc/timezone are world-readable by convention (dbus, libc). */
const PUBLIC_MODE = 0o644;
const MACHINE_ID_MODE = 0o444;
const MACHINE_ID = /^[0-9a-f]{32}$/;

const StampSchema = z.object({
  v: z.literal(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  deviceId: z.string(),
  storeId: z.string(),
  credentials: z.enum(['certificate', 'token']),
});
type Stamp = z.infer<typeof StampSchema>;

export interface ProvisionOptions {
  /** Where the FAT boot partition is mounted (/boot/firmware on Raspberry Pi OS). */
  bootDir: string;
  /** The data partition's directory for the register (registerd's stateDir). */
  dataDir: string;
  /** The root for timezone and localtime: /etc, or a writable directory /etc links into. */
  etcDir: string;
  /** The zoneinfo directory on the running system, for the localtime link. */
  zoneinfoDir?: string;
  io?: ProvisionFs;
  /** A new machine id: 32 lowercase hex digits (random unless a test pins it). */
  newMachineId?: () => string;
}

export type ProvisionStep =
  'machine-id' | 'cmdline' | 'tls' | 'cashiers' | 'config' | 'timezone' | 'stamp' | 'secrets-removed';

export interface ProvisionResult {
  /** applied: installed now; completed: a crashed run's last step finished; unchanged: nothing to do. */
  outcome: 'applied' | 'completed' | 'unchanged' | 'not-present';
  deviceId?: string;
  /** What this run changed, in order. */
  changed: ProvisionStep[];
}

function readOptional(io: ProvisionFs, file: string): Buffer | undefined {
  const size = io.size(file);
  if (size < 0) return undefined;
  if (size > MAX_FILE_BYTES)
    throw new ProvisionError('PROVISION_INVALID', `${file}: larger than ${MAX_FILE_BYTES} bytes`);
  return io.readFile(file);
}

function readBootFiles(io: ProvisionFs, folder: string): ProvisionFiles | undefined {
  const provision = readOptional(io, path.join(folder, BOOT_FILES.provision));
  if (!provision) return undefined;
  return {
    provision,
    ca: readOptional(io, path.join(folder, BOOT_FILES.ca)),
    cert: readOptional(io, path.join(folder, BOOT_FILES.cert)),
    key: readOptional(io, path.join(folder, BOOT_FILES.key)),
    token: readOptional(io, path.join(folder, BOOT_FILES.token)),
  };
}

function readStamp(io: ProvisionFs, file: string): Stamp | undefined {
  try {
    const bytes = readOptional(io, file);
    if (!bytes) return undefined;
    const parsed = StampSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // a damaged stamp is no stamp: the provisioning is applied again
  }
}

/**
 * Replace `file` with `data` atomically and durably, with `mode`, unless it already holds exactly
 * that (a re-run after a crash rewrites only what differs). Returns whether it wrote.
 */
function install(io: ProvisionFs, file: string, data: Buffer, mode: number): boolean {
  if (io.size(file) === data.length && io.readFile(file).equals(data)) return false;
  writeFileAtomic(io, file, data, (tmp) => io.chmod(tmp, mode));
  return true;
}

/** The kernel command line on the boot partition (Debian's raspi-firmware and Raspberry Pi OS). */
export const CMDLINE_FILE = 'cmdline.txt';
/** One line; the firmware reads at most 4 KiB of it. */
const MAX_CMDLINE_BYTES = 4096;

/**
 * Make the boot partition's cmdline.txt say `systemd.machine_id=<id>`, so systemd (and journald, which
 * names its files by it) has the data partition's id from the first instant of every boot, before any
 * partition is mounted; on a read-only root there is no other place early enough. A cmdline.txt that
 * is missing, not one line or too long is left alone (the register then gets a new id each boot,
 * which costs journalctl's view of earlier boots, not the register's work). Returns whether it wrote.
 */
function cmdlineMachineId(io: ProvisionFs, bootDir: string, machineId: string): boolean {
  const file = path.join(bootDir, CMDLINE_FILE);
  const size = io.size(file);
  if (size < 0 || size > MAX_CMDLINE_BYTES) return false;
  const text = io.readFile(file).toString('latin1');
  const line = text.replace(/\r?\n$/, '');
  if (/[\r\n]/.test(line) || !line.trim()) return false;
  const words = line.split(/\s+/).filter((w) => w && !w.startsWith('systemd.machine_id='));
  const next = `${[...words, `systemd.machine_id=${machineId}`].join(' ')}\n`;
  if (next === text) return false;
  // FAT has no modes: the atomic replace is what matters (a torn cmdline.txt would not boot).
  writeFileAtomic(io, file, Buffer.from(next, 'latin1'));
  return true;
}

/** Remove a file durably if it is there. Returns whether it was. */
function remove(io: ProvisionFs, file: string): boolean {
  if (io.size(file) < 0) return false;
  io.unlink(file);
  io.syncDir(path.dirname(file));
  return true;
}

/** Point `link` at `target` atomically (a temp link renamed over it), unless it already does. */
function installSymlink(io: ProvisionFs, target: string, link: string): boolean {
  if (io.readlink(link) === target) return false;
  const tmp = `${link}.tmp`;
  if (io.readlink(tmp) !== undefined || io.size(tmp) >= 0) io.unlink(tmp);
  io.symlink(target, tmp);
  io.rename(tmp, link);
  io.syncDir(path.dirname(link));
  return true;
}

/** The registerd configuration a provisioning produces (the ConfigSchema shape, absolute paths). */
export function registerdConfig(p: Provisioning, dataDir: string): Record<string, unknown> {
  const abs = (rel: string) => path.resolve(dataDir, rel);
  return {
    deviceId: p.deviceId,
    storeId: p.storeId,
    stateDir: path.resolve(dataDir),
    seed: { cashiersFile: abs(DATA_FILES.cashiersSeed) },
    cloud: {
      brokerUrl: p.brokerUrl,
      tls: { caFile: abs(DATA_FILES.ca), certFile: abs(DATA_FILES.cert), keyFile: abs(DATA_FILES.key) },
      // With a token there is no client certificate yet: registerd enrols (cloud-bridge/enrol.ts),
      // writes tls/device.crt and tls/device.key and removes the token; it sells offline meanwhile.
      ...(p.credentials.kind === 'token'
        ? { enrol: { url: p.enrolUrl, tokenFile: abs(DATA_FILES.token) } }
        : {}),
    },
  };
}

/** Whether the data partition holds a journal with segments (sales that may not be synced yet). */
function hasJournal(io: ProvisionFs, dataDir: string): boolean {
  return io.list(path.join(dataDir, 'journal')).some((n) => n.endsWith('.seg'));
}

function removeSecrets(io: ProvisionFs, folder: string): boolean {
  let removed = false;
  for (const name of [BOOT_FILES.key, BOOT_FILES.token]) {
    const file = path.join(folder, name);
    if (io.size(file) >= 0) {
      io.unlink(file);
      removed = true;
    }
  }
  if (removed) io.syncDir(folder);
  return removed;
}

/**
 * Provision this register from the boot partition, once. Throws ProvisionError (nothing changed) on
 * bad input; an I/O error is thrown as it is (re-running finishes the job).
 */
export function provision(opts: ProvisionOptions): ProvisionResult {
  const io = opts.io ?? nodeProvisionFs;
  const folder = path.join(opts.bootDir, BOOT_FOLDER);
  const data = (rel: string) => path.join(opts.dataDir, rel);
  const stamp = readStamp(io, data(DATA_FILES.stamp));

  const files = readBootFiles(io, folder);
  /** Step 1b for a register provisioned earlier (a boot partition written anew keeps getting it). */
  const keepCmdline = (): ProvisionStep[] => {
    const id = readOptional(io, data(DATA_FILES.machineId))?.toString('latin1').trim();
    return id !== undefined && MACHINE_ID.test(id) && cmdlineMachineId(io, opts.bootDir, id)
      ? ['cmdline']
      : [];
  };
  if (!files) {
    if (stamp) return { outcome: 'not-present', deviceId: stamp.deviceId, changed: keepCmdline() };
    throw new ProvisionError(
      'PROVISION_MISSING',
      `not provisioned and no ${BOOT_FOLDER}/${BOOT_FILES.provision} on the boot partition (${opts.bootDir})`,
    );
  }
  // Applied already: at most the last step (removing the secrets) is left to do.
  if (stamp && stamp.sha256 === provisioningHash(files)) {
    const changed = keepCmdline();
    if (removeSecrets(io, folder)) changed.push('secrets-removed');
    return { outcome: changed.length ? 'completed' : 'unchanged', deviceId: stamp.deviceId, changed };
  }

  const p = validateProvisioning(files);
  if (stamp && stamp.deviceId !== p.deviceId && hasJournal(io, opts.dataDir))
    throw new ProvisionError(
      'PROVISION_FOREIGN_DATA',
      `the data partition holds the journal of ${stamp.deviceId}, not ${p.deviceId}: its sales may not be synced; ` +
        'sync or move the journal away (docs/recover.md) before provisioning another device id',
    );

  const changed: ProvisionStep[] = [];
  ensureDurableDir(io, opts.dataDir);

  // 1. The machine id is generated once and then kept across re-provisioning: it names the device to
  //    systemd, journald and DHCP, not to the books.
  const idFile = data(DATA_FILES.machineId);
  let machineId = readOptional(io, idFile)?.toString('latin1').trim();
  if (machineId === undefined || !MACHINE_ID.test(machineId)) {
    machineId = (opts.newMachineId ?? (() => randomBytes(16).toString('hex')))();
    if (!MACHINE_ID.test(machineId)) throw new Error('a machine id is 32 lowercase hex digits');
    install(io, idFile, Buffer.from(`${machineId}\n`), MACHINE_ID_MODE);
    changed.push('machine-id');
  }
  // 1b. …and systemd gets it from the kernel command line, from the next boot on.
  if (cmdlineMachineId(io, opts.bootDir, machineId)) changed.push('cmdline');

  // 2. The broker's CA and this register's credentials, the manager seed, then the config naming them.
  const tlsDir = data(DATA_FILES.tlsDir);
  ensureDurableDir(io, tlsDir);
  io.chmod(tlsDir, 0o700);
  let tls = install(io, data(DATA_FILES.ca), p.caPem, SECRET_MODE);
  if (p.credentials.kind === 'certificate') {
    tls = install(io, data(DATA_FILES.cert), p.credentials.certPem, SECRET_MODE) || tls;
    tls = install(io, data(DATA_FILES.key), p.credentials.keyPem, SECRET_MODE) || tls;
    tls = remove(io, data(DATA_FILES.token)) || tls;
  } else {
    tls = install(io, data(DATA_FILES.token), Buffer.from(`${p.credentials.token}\n`), SECRET_MODE) || tls;
    // A new enrolment replaces the old identity.
    tls = remove(io, data(DATA_FILES.cert)) || tls;
    tls = remove(io, data(DATA_FILES.key)) || tls;
  }
  if (tls) changed.push('tls');

  const seedFile = data(DATA_FILES.cashiersSeed);
  ensureDurableDir(io, path.dirname(seedFile));
  // Version 1: any cashier list the ledger publishes for the store (version ≥ 2) replaces it.
  const seed = {
    version: 1,
    storeId: p.storeId,
    cashiers: [{ ...p.manager, role: 'manager' }],
  };
  if (install(io, seedFile, Buffer.from(JSON.stringify(seed, null, 2) + '\n'), SECRET_MODE))
    changed.push('cashiers');

  const config = JSON.stringify(registerdConfig(p, opts.dataDir), null, 2) + '\n';
  if (install(io, data(DATA_FILES.config), Buffer.from(config), SECRET_MODE)) changed.push('config');

  // 3. The time zone, as Debian keeps it: the name in timezone, the zone file behind localtime.
  ensureDurableDir(io, opts.etcDir);
  const zoneinfo = opts.zoneinfoDir ?? '/usr/share/zoneinfo';
  let tz = install(io, path.join(opts.etcDir, 'timezone'), Buffer.from(`${p.timeZone}\n`), PUBLIC_MODE);
  tz = installSymlink(io, path.posix.join(zoneinfo, p.timeZone), path.join(opts.etcDir, 'localtime')) || tz;
  if (tz) changed.push('timezone');

  // 4. The stamp, once everything it vouches for is durable.
  const stampDoc: Stamp = {
    v: 1,
    sha256: p.sha256,
    deviceId: p.deviceId,
    storeId: p.storeId,
    credentials: p.credentials.kind,
  };
  install(io, data(DATA_FILES.stamp), Buffer.from(JSON.stringify(stampDoc) + '\n'), SECRET_MODE);
  changed.push('stamp');

  // 5. Only now may the secrets leave the boot partition.
  if (removeSecrets(io, folder)) changed.push('secrets-removed');
  return { outcome: 'applied', deviceId: p.deviceId, changed };
}
