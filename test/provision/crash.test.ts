// Provisioning interrupted at every step finishes on the next run. Two models: the process killed at
// each mutating file operation on the real file system (the page cache survives), and a power cut at
// each operation on the fault-injecting file system (only what was synced survives, the rest is
// dropped, kept or torn at random, seeded).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DATA_FILES, nodeProvisionFs, provision, type ProvisionFs } from '../../appliance/provision/apply.js';
import { BOOT_FILES, BOOT_FOLDER } from '../../appliance/provision/format.js';
import { parseConfig } from '../../appliance/config.js';
import { FaultFs } from '../support/fault-fs.js';
import { Rng } from '../support/rng.js';
import { goodBoot, makePki, plain, snapshot, tempRoot, writeBoot } from '../support/provision-fixtures.js';

const pki = makePki();
t.teardown(() => fs.rmSync(pki.dir, { recursive: true, force: true }));
const MACHINE_ID = '0123456789abcdef0123456789abcdef';

class Killed extends Error {}

const MUTATING = [
  'mkdirp',
  'open',
  'write',
  'fdatasync',
  'rename',
  'unlink',
  'syncDir',
  'symlink',
  'chmod',
] as const;

/** The real file system, with the process "killed" (an exception) at the n-th mutating operation. */
function killedAt(n: number): ProvisionFs {
  let ops = 0;
  const io: ProvisionFs = { ...nodeProvisionFs };
  for (const name of MUTATING) {
    const real = nodeProvisionFs[name] as (...args: unknown[]) => unknown;
    (io as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      const mutates = name !== 'open' || args[1] === 'create';
      if (mutates && ++ops === n) throw new Killed(`killed at operation ${n} (${name})`);
      return real(...args);
    };
  }
  return io;
}

t.test('killed at every mutating operation, the next run completes it exactly', async (t) => {
  const base = tempRoot();
  t.teardown(() => fs.rmSync(base.root, { recursive: true, force: true }));
  // Every scenario runs in the same paths, so the reference snapshot compares byte for byte.
  const fresh = () => {
    for (const d of [base.boot, base.data, base.etc]) {
      fs.rmSync(d, { recursive: true, force: true });
      fs.mkdirSync(d);
    }
    writeBoot(base.boot, goodBoot(pki));
  };
  const run = (io?: ProvisionFs) =>
    provision({
      bootDir: base.boot,
      dataDir: base.data,
      etcDir: base.etc,
      newMachineId: () => MACHINE_ID,
      ...(io ? { io } : {}),
    });

  fresh();
  run();
  const reference = plain(snapshot(base.root), false);

  let n = 1;
  for (; n < 1000; n++) {
    fresh();
    try {
      run(killedAt(n));
      break; // n is past the last operation: the run completed
    } catch (err) {
      if (!(err instanceof Killed)) throw err;
    }
    // applied or completed; unchanged only when the kill hit the very last sync.
    run();
    const got = plain(snapshot(base.root), false);
    if (JSON.stringify(got) !== JSON.stringify(reference)) t.same(got, reference, `killed at operation ${n}`);
    const third = run();
    if (third.outcome !== 'unchanged') t.fail(`after kill ${n}, a third run still changed ${third.changed}`);
  }
  t.ok(n > 40, `a kill at each of the ${n - 1} mutating operations was recovered from`);
  t.notOk(fs.existsSync(path.join(base.boot, BOOT_FOLDER, BOOT_FILES.key)));
});

/** FaultFs with the two things /etc needs: a symlink (kept as a small file) and chmod (not modelled). */
class FaultProvisionFs extends FaultFs implements ProvisionFs {
  symlink(target: string, link: string): void {
    const fd = this.open(link, 'create');
    this.write(fd, Buffer.from(`symlink:${target}`), 0);
    this.fdatasync(fd); // a symlink's target is written with its inode
    this.close(fd);
  }
  readlink(link: string): string | undefined {
    if (this.size(link) < 0) return undefined;
    const s = this.readFile(link).toString();
    return s.startsWith('symlink:') ? s.slice('symlink:'.length) : undefined;
  }
  chmod(): void {}
}

t.test('a power cut at every operation: the next boot completes the provisioning', async (t) => {
  const boot = goodBoot(pki);
  const disk = (seed: number) => {
    const io = new FaultProvisionFs(new Rng(seed));
    io.mkdirp('/data');
    io.mkdirp('/etc');
    for (const [k, v] of Object.entries(boot) as [keyof typeof BOOT_FILES, string | Buffer][])
      io.put(`/boot/${BOOT_FOLDER}/${BOOT_FILES[k]}`, Buffer.from(v));
    return io;
  };
  const run = (io: ProvisionFs) =>
    provision({ bootDir: '/boot', dataDir: '/data', etcDir: '/etc', io, newMachineId: () => MACHINE_ID });

  const clean = disk(0);
  const setupOps = clean.ops;
  run(clean);
  const total = clean.ops - setupOps;
  t.ok(total > 40, `${total} operations in a clean run`);

  let scenarios = 0;
  for (const seed of [1, 2, 3])
    for (let n = 1; n <= total; n++) {
      const io = disk(seed * 1000 + n);
      io.cutPowerAfter(n);
      if (t.throws(() => run(io), { code: 'EPOWERCUT' }, `seed ${seed} cut ${n}`)) scenarios++;
      io.crash();
      run(io);
      io.crash(); // whatever the second run did must already be durable
      const where = `seed ${seed}, power cut at operation ${n}`;
      const config = parseConfig(JSON.parse(io.readFile('/data/registerd.json').toString()), {}, '/data');
      const checks: [boolean, string][] = [
        [config.deviceId === 'till-a' && config.cloud.tls?.keyFile === '/data/tls/device.key', 'config'],
        [io.readFile('/data/tls/device.key').equals(Buffer.from(boot.key!)), 'key installed'],
        [io.readFile('/data/tls/device.crt').equals(Buffer.from(boot.cert!)), 'certificate installed'],
        [io.readFile('/data/tls/ca.crt').equals(Buffer.from(boot.ca!)), 'CA installed'],
        [io.size(path.posix.join('/data', DATA_FILES.cashiersSeed)) > 0, 'manager seed'],
        [io.readFile('/data/machine-id').toString() === `${MACHINE_ID}\n`, 'machine-id'],
        [io.readFile('/etc/timezone').toString() === 'Europe/Berlin\n', 'timezone'],
        [io.readlink('/etc/localtime') === '/usr/share/zoneinfo/Europe/Berlin', 'localtime'],
        [io.size('/data/provisioned.json') > 0, 'stamp'],
        [io.size(`/boot/${BOOT_FOLDER}/${BOOT_FILES.key}`) < 0, 'key gone from the boot partition'],
      ];
      for (const [ok, what] of checks) if (!ok) t.fail(`${where}: ${what}`);
      const again = run(io);
      if (again.outcome !== 'unchanged') t.fail(`${where}: a third run changed ${again.changed}`);
    }
  t.equal(scenarios, 3 * total, `${scenarios} power cuts, each recovered`);
});
