// Stamp provisioning files for many registers from a CSV straight into SD-card images (or a card),
// without mounting anything: sfdisk finds the FAT boot partition, mtools writes into it.
//
//   npm run stamp -- --csv devices.csv --image base.img --out-dir cards/   one copy per device
//   npm run stamp -- --csv devices.csv --image /dev/sdX --only till-a      one card, in place
//
// Every row is checked first, with the validator the register itself runs at first boot; one bad row
// refuses the whole batch, naming its line. docs/operators.md, "Provisioning".
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BOOT_FILES,
  BOOT_FOLDER,
  MAX_FILE_BYTES,
  ProvisionError,
  renderProvisionText,
  validateProvisioning,
  type Describe,
  type ProvisionFiles,
  type ProvisionText,
} from '../appliance/provision/format.js';
import { hashPin, PIN_FORMAT } from '../appliance/till/cashiers.js';

export class StampError extends Error {
  constructor(
    message: string,
    readonly issues: string[] = [message],
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'StampError';
  }
}

/** The CSV's columns; the header row names them, in any order. */
export const CSV_COLUMNS = {
  required: ['deviceId', 'storeId', 'brokerUrl', 'timeZone', 'managerId', 'managerName', 'caFile'],
  /** managerPin or managerPinHash; certFile and keyFile, or enrolmentToken with enrolUrl. */
  optional: ['managerPin', 'managerPinHash', 'certFile', 'keyFile', 'enrolmentToken', 'enrolUrl'],
} as const;

/** 10,000 devices per batch and 16 KiB per line: far above a roll-out, a bound on a wrong file. */
const MAX_ROWS = 10_000;
const MAX_LINE_CHARS = 16 * 1024;

/**
 * RFC 4180 without line breaks inside fields: comma-separated, a field may be "quoted" with "" for a
 * quote. Blank lines and lines starting with # are skipped. Returns rows with their line numbers.
 */
export function parseCsv(text: string, name: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  const issues: string[] = [];
  text
    .replace(/^\uFEFF/, '')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '' || line.startsWith('#')) return;
      if (line.length > MAX_LINE_CHARS) return void issues.push(`${name} line ${i + 1}: too long`);
      const fields: string[] = [];
      let at = 0;
      for (;;) {
        if (line[at] === '"') {
          let value = '';
          let j = at + 1;
          for (;;) {
            const q = line.indexOf('"', j);
            if (q < 0) return void issues.push(`${name} line ${i + 1}: a quoted field is not closed`);
            value += line.slice(j, q);
            if (line[q + 1] === '"') {
              value += '"';
              j = q + 2;
              continue;
            }
            at = q + 1;
            break;
          }
          fields.push(value);
          if (at < line.length && line[at] !== ',')
            return void issues.push(`${name} line ${i + 1}: text after a closing quote`);
        } else {
          const comma = line.indexOf(',', at);
          const end = comma < 0 ? line.length : comma;
          const value = line.slice(at, end);
          if (value.includes('"')) return void issues.push(`${name} line ${i + 1}: a stray quote`);
          fields.push(value.trim());
          at = end;
        }
        if (at >= line.length) break;
        at++; // the comma
        if (at === line.length) {
          fields.push('');
          break;
        }
      }
      rows.push({ line: i + 1, fields });
    });
  if (rows.length > MAX_ROWS + 1) issues.push(`${name}: more than ${MAX_ROWS} devices`);
  if (issues.length) throw new StampError(`${name}: refused`, issues);
  return rows;
}

/** One register's provisioning files, checked, ready to write. */
export interface StampDevice {
  deviceId: string;
  line: number;
  files: ProvisionFiles;
}

/**
 * Read and check every row of the CSV (paths in it are relative to the CSV's folder). Throws
 * StampError listing every problem with its line when any row is bad.
 */
export function loadDevices(csvFile: string, nowMs = Date.now()): StampDevice[] {
  const name = path.basename(csvFile);
  const dir = path.dirname(path.resolve(csvFile));
  const rows = parseCsv(fs.readFileSync(csvFile, 'utf8'), name);
  const [header, ...body] = rows;
  if (!header) throw new StampError(`${name}: empty (a header row and one row per device)`);
  const issues: string[] = [];
  const known = new Set<string>([...CSV_COLUMNS.required, ...CSV_COLUMNS.optional]);
  const col = new Map<string, number>();
  header.fields.forEach((h, i) => {
    if (!known.has(h)) issues.push(`${name} line ${header.line}: unknown column "${h}"`);
    else if (col.has(h)) issues.push(`${name} line ${header.line}: column "${h}" twice`);
    col.set(h, i);
  });
  for (const c of CSV_COLUMNS.required)
    if (!col.has(c)) issues.push(`${name} line ${header.line}: column "${c}" missing`);
  if (issues.length) throw new StampError(`${name}: refused`, issues);
  if (!body.length) throw new StampError(`${name}: no devices`);

  const devices: StampDevice[] = [];
  const seen = new Map<string, number>();
  for (const row of body) {
    const where = `${name} line ${row.line}`;
    if (row.fields.length !== header.fields.length) {
      issues.push(`${where}: ${row.fields.length} fields, the header has ${header.fields.length}`);
      continue;
    }
    const get = (c: string) => {
      const i = col.get(c);
      const v = i === undefined ? '' : row.fields[i]!;
      return v === '' ? undefined : v;
    };
    const rowIssues: string[] = [];
    const readFile = (column: string): Buffer | undefined => {
      const rel = get(column);
      if (rel === undefined) return undefined;
      const file = path.resolve(dir, rel);
      try {
        if (fs.statSync(file).size > MAX_FILE_BYTES) {
          rowIssues.push(`${where}: ${column}: ${rel} is larger than ${MAX_FILE_BYTES} bytes`);
          return undefined;
        }
        return fs.readFileSync(file);
      } catch (err) {
        rowIssues.push(`${where}: ${column}: cannot read ${rel} (${(err as NodeJS.ErrnoException).code})`);
        return undefined;
      }
    };
    const pin = get('managerPin');
    let pinHash = get('managerPinHash');
    if (pin !== undefined && pinHash !== undefined)
      rowIssues.push(`${where}: managerPin and managerPinHash: give one, not both`);
    else if (pin !== undefined) {
      if (!PIN_FORMAT.test(pin)) rowIssues.push(`${where}: managerPin: 4 to 8 digits`);
      else pinHash = hashPin(pin); // the PIN itself never reaches the card
    } else if (pinHash === undefined) rowIssues.push(`${where}: managerPin or managerPinHash: missing`);
    const token = get('enrolmentToken');
    if (token !== undefined && (get('certFile') !== undefined || get('keyFile') !== undefined))
      rowIssues.push(`${where}: certFile and keyFile, or enrolmentToken: give one, not both`);

    const values = {
      deviceId: get('deviceId') ?? '',
      storeId: get('storeId') ?? '',
      brokerUrl: get('brokerUrl') ?? '',
      timeZone: get('timeZone') ?? '',
      enrolUrl: get('enrolUrl'),
      'manager.id': get('managerId') ?? '',
      'manager.name': get('managerName') ?? '',
      'manager.pinHash': pinHash ?? '',
    } satisfies ProvisionText;
    const files: ProvisionFiles = {
      provision: renderProvisionText(values, `stamped from ${name} line ${row.line}`),
      ca: readFile('caFile'),
      cert: readFile('certFile'),
      key: readFile('keyFile'),
      token: token === undefined ? undefined : Buffer.from(`${token}\n`),
    };
    if (!rowIssues.length) {
      try {
        validateProvisioning(files, describeRow(where, pin !== undefined));
      } catch (err) {
        if (!(err instanceof ProvisionError)) throw err;
        rowIssues.push(...err.issues);
      }
    }
    // The workstation's clock is trusted, the register's is not (a Pi has no RTC): expiry is checked here.
    if (!rowIssues.length && files.cert) {
      const validTo = new X509Certificate(files.cert).validTo;
      if (Date.parse(validTo) <= nowMs) rowIssues.push(`${where}: certFile: expired (${validTo})`);
    }
    const first = seen.get(values.deviceId);
    if (first !== undefined) rowIssues.push(`${where}: deviceId ${values.deviceId} is on line ${first} too`);
    seen.set(values.deviceId, row.line);
    issues.push(...rowIssues);
    devices.push({ deviceId: values.deviceId, line: row.line, files });
  }
  if (issues.length) throw new StampError(`${name}: refused, nothing was written`, issues);
  return devices;
}

/** Messages about a row name its CSV columns, not the files they become. */
function describeRow(where: string, pinGiven: boolean): Describe {
  const columnOfKey: Record<string, string> = {
    'manager.id': 'managerId',
    'manager.name': 'managerName',
    'manager.pinHash': pinGiven ? 'managerPin' : 'managerPinHash',
  };
  const columnOfFile = {
    provision: '',
    ca: 'caFile',
    cert: 'certFile',
    key: 'keyFile',
    token: 'enrolmentToken',
  };
  return (file, key) => {
    const column = key !== undefined ? (columnOfKey[key] ?? key) : columnOfFile[file];
    return column ? `${where}: ${column}` : where;
  };
}

/** Partition types of a FAT file system: MBR ids, and GPT's basic data and EFI system partition. */
const FAT_TYPES = new Set([
  '1',
  '4',
  '6',
  'b',
  'c',
  'e',
  'ef',
  'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7',
  'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
]);

/** The byte offset of the first FAT partition of an image file or a block device (sfdisk --json). */
export function findBootPartition(image: string): { offsetBytes: number; sizeBytes: number } {
  let out: string;
  try {
    out = execFileSync('sfdisk', ['--json', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new StampError(
      `${image}: sfdisk cannot read a partition table (${stderr || (err as Error).message})`,
    );
  }
  const table = (
    JSON.parse(out) as {
      partitiontable: { sectorsize?: number; partitions?: { start: number; size: number; type: string }[] };
    }
  ).partitiontable;
  const sector = table.sectorsize ?? 512;
  const part = (table.partitions ?? []).find(
    (p) => FAT_TYPES.has(p.type.replace(/^0x/i, '').toLowerCase()) || FAT_TYPES.has(p.type.toUpperCase()),
  );
  if (!part) throw new StampError(`${image}: no FAT partition in its partition table`);
  return { offsetBytes: part.start * sector, sizeBytes: part.size * sector };
}

function mtools(tool: string, args: string[]): void {
  try {
    // MTOOLS_SKIP_CHECK: an image's FAT need not have the geometry mtools expects of a floppy.
    execFileSync(tool, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
    });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new StampError(`${tool} failed: ${stderr || (err as Error).message}`);
  }
}

/**
 * Write one register's files into the FAT at `offsetBytes` of `image` (a file or a block device),
 * replacing any earlier ones; stale credentials of the other kind are removed. The files pass through
 * a private temporary folder that is removed afterwards.
 */
export function stampInto(image: string, offsetBytes: number, device: StampDevice): void {
  const at = `${image}@@${offsetBytes}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stamp-'));
  try {
    const names: string[] = [];
    const put = (name: string, data: Buffer | undefined) => {
      if (!data) return;
      fs.writeFileSync(path.join(tmp, name), data, { mode: 0o600 });
      names.push(path.join(tmp, name));
    };
    put(BOOT_FILES.provision, device.files.provision);
    put(BOOT_FILES.ca, device.files.ca);
    put(BOOT_FILES.cert, device.files.cert);
    put(BOOT_FILES.key, device.files.key);
    put(BOOT_FILES.token, device.files.token);
    try {
      mtools('mdir', ['-b', '-i', at, `::/${BOOT_FOLDER}`]);
    } catch {
      mtools('mmd', ['-i', at, `::/${BOOT_FOLDER}`]);
    }
    const stale = [BOOT_FILES.cert, BOOT_FILES.key, BOOT_FILES.token].filter(
      (n) => !names.some((f) => path.basename(f) === n),
    );
    for (const n of stale) {
      try {
        mtools('mdel', ['-i', at, `::/${BOOT_FOLDER}/${n}`]);
      } catch {
        // not there
      }
    }
    mtools('mcopy', ['-o', '-i', at, ...names, `::/${BOOT_FOLDER}/`]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export interface StampOptions {
  csv: string;
  image: string;
  /** One image per device, `<outDir>/<deviceId>.img`; without it `image` is written in place. */
  outDir?: string;
  /** Stamp only this device (the whole CSV is still checked). */
  only?: string;
  /** The time certificates must still be valid at; now by default. */
  nowMs?: number;
}

/** Returns the files written (image copies, or the image itself). */
export function stamp(opts: StampOptions): string[] {
  let devices = loadDevices(opts.csv, opts.nowMs);
  if (opts.only !== undefined) {
    devices = devices.filter((d) => d.deviceId === opts.only);
    if (!devices.length) throw new StampError(`${opts.only}: no such deviceId in ${opts.csv}`);
  }
  const { offsetBytes } = findBootPartition(opts.image);
  if (opts.outDir === undefined) {
    if (devices.length !== 1)
      throw new StampError(
        `${opts.csv} has ${devices.length} devices and ${opts.image} is written in place: give --out-dir, or --only DEVICEID`,
      );
    stampInto(opts.image, offsetBytes, devices[0]!);
    return [opts.image];
  }
  fs.mkdirSync(opts.outDir, { recursive: true });
  const targets = devices.map((d) => path.join(opts.outDir!, `${d.deviceId}.img`));
  const taken = targets.filter((t) => fs.existsSync(t));
  if (taken.length) throw new StampError(`refusing to overwrite: ${taken.join(', ')}`);
  devices.forEach((d, i) => {
    // A half-stamped copy never carries the final name.
    const partial = `${targets[i]}.partial`;
    // Sparse: a card image is mostly empty space; a full copy per device would cost gigabytes.
    execFileSync('cp', ['--sparse=always', '--reflink=auto', opts.image, partial], { stdio: 'pipe' });
    stampInto(partial, offsetBytes, d);
    fs.renameSync(partial, targets[i]!);
  });
  return targets;
}

const USAGE = 'usage: npm run stamp -- --csv FILE --image IMAGE|DEVICE [--out-dir DIR] [--only DEVICEID]';

export function main(argv: string[]): number {
  let values: { csv?: string; image?: string; 'out-dir'?: string; only?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        csv: { type: 'string' },
        image: { type: 'string' },
        'out-dir': { type: 'string' },
        only: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch {
    values = {};
  }
  if (!values.csv || !values.image) {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }
  try {
    const written = stamp({
      csv: values.csv,
      image: values.image,
      ...(values['out-dir'] !== undefined ? { outDir: values['out-dir'] } : {}),
      ...(values.only !== undefined ? { only: values.only } : {}),
    });
    for (const f of written) process.stdout.write(`stamped ${f}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof StampError)) throw err;
    for (const issue of err.issues) process.stderr.write(`stamp: ${issue}\n`);
    return err.exitCode;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
