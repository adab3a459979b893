// Test material for provisioning: a CA and register certificates made with openssl (as
// docs/security.md issues them), provisioning folders on a temporary "boot partition", and snapshots
// of directory trees to prove that a refused run changed nothing.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BOOT_FILES, BOOT_FOLDER } from '../../appliance/provision/format.js';
import { hashPin } from '../../appliance/till/cashiers.js';

export const MANAGER_PIN = '4321';
/** Hashed once per process: scrypt costs ~50 ms. */
export const MANAGER_PIN_HASH = hashPin(MANAGER_PIN);

export interface Pki {
  dir: string;
  caCrt: Buffer;
  /** Per device id: its certificate and key. */
  device: (id: string) => { crt: Buffer; key: Buffer };
  /** A certificate for `id` signed by another CA. */
  foreign: (id: string) => { crt: Buffer; key: Buffer };
}

export function makePki(): Pki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'provision-pki-'));
  const ssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const makeCa = (name: string) => {
    ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    ssl(
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-sha256',
      '-days',
      '3650',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      `${name}.crt`,
    );
  };
  makeCa('ca');
  makeCa('other-ca');
  fs.writeFileSync(
    path.join(dir, 'client.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  const issued = new Map<string, { crt: Buffer; key: Buffer }>();
  const issue = (ca: string, id: string) => {
    const name = `${ca}-${id}`;
    const have = issued.get(name);
    if (have) return have;
    ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    ssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${id}`, '-out', `${name}.csr`);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      '825',
      '-sha256',
      '-extfile',
      'client.ext',
      '-out',
      `${name}.crt`,
    );
    const pair = {
      crt: fs.readFileSync(path.join(dir, `${name}.crt`)),
      key: fs.readFileSync(path.join(dir, `${name}.key`)),
    };
    issued.set(name, pair);
    return pair;
  };
  return {
    dir,
    caCrt: fs.readFileSync(path.join(dir, 'ca.crt')),
    device: (id) => issue('ca', id),
    foreign: (id) => issue('other-ca', id),
  };
}

export function provisionText(over: Record<string, string | undefined> = {}): string {
  const values: Record<string, string | undefined> = {
    deviceId: 'till-a',
    storeId: 'store-1',
    brokerUrl: 'mqtts://mqtt.example.com:8883',
    timeZone: 'Europe/Berlin',
    'manager.id': 'mia',
    'manager.name': 'Mia Manager',
    'manager.pinHash': MANAGER_PIN_HASH,
    ...over,
  };
  return (
    '# written by hand, as an operator would\r\n' +
    Object.entries(values)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k} = ${v}\r\n`)
      .join('')
  );
}

export type BootContent = Partial<Record<keyof typeof BOOT_FILES, string | Buffer | undefined>>;

/** Write a provisioning folder onto a directory standing in for the FAT boot partition. */
export function writeBoot(bootDir: string, content: BootContent): void {
  const folder = path.join(bootDir, BOOT_FOLDER);
  fs.mkdirSync(folder, { recursive: true });
  for (const [k, v] of Object.entries(content) as [keyof typeof BOOT_FILES, string | Buffer | undefined][])
    if (v !== undefined) fs.writeFileSync(path.join(folder, BOOT_FILES[k]), v);
}

/** A good provisioning for `id`: the text, the CA, its certificate and key. */
export function goodBoot(
  pki: Pki,
  id = 'till-a',
  over: Record<string, string | undefined> = {},
): BootContent {
  const { crt, key } = pki.device(id);
  return { provision: provisionText({ deviceId: id, ...over }), ca: pki.caCrt, cert: crt, key };
}

export interface Root {
  root: string;
  boot: string;
  data: string;
  etc: string;
}

export function tempRoot(): Root {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'provision-'));
  const r = {
    root,
    boot: path.join(root, 'boot'),
    data: path.join(root, 'data'),
    etc: path.join(root, 'etc'),
  };
  for (const d of [r.boot, r.data, r.etc]) fs.mkdirSync(d);
  return r;
}

export interface Entry {
  kind: 'file' | 'dir' | 'link';
  mode: number;
  sha256?: string;
  target?: string;
  mtimeMs: number;
}

/** Every entry under `dir`, with its mode, content hash, link target and mtime. */
export function snapshot(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink())
        out.set(rel, { kind: 'link', mode, target: fs.readlinkSync(p), mtimeMs: st.mtimeMs });
      else if (st.isDirectory()) {
        out.set(rel, { kind: 'dir', mode, mtimeMs: st.mtimeMs });
        walk(p);
      } else
        out.set(rel, {
          kind: 'file',
          mode,
          sha256: createHash('sha256').update(fs.readFileSync(p)).digest('hex'),
          mtimeMs: st.mtimeMs,
        });
    }
  };
  walk(dir);
  return out;
}

/** A snapshot as a plain object for t.same, optionally without mtimes. */
export function plain(snap: Map<string, Entry>, withTimes = true): Record<string, Omit<Entry, 'mtimeMs'>> {
  return Object.fromEntries(
    [...snap].map(([k, { mtimeMs, ...rest }]) => [k, withTimes ? { ...rest, mtimeMs } : rest]),
  );
}
