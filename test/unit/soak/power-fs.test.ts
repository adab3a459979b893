// The soak's simulated-power file layer: nothing reaches the disk before it is made durable, so a new
// instance over the same directory (the process after a power cut) sees only what was synced; a cut
// armed at step n leaves a flush or a directory sync half done.
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { HIDDEN_PREFIX, junkSector, PAGE, PowerFs } from '../../../scripts/soak/power-fs.js';
import { writeFileAtomic } from '../../../appliance/journal/fs.js';

class Cut extends Error {}
const cut = (): never => {
  throw new Cut('power cut');
};

function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'powerfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a write is seen at once but reaches the disk only with fdatasync', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'a');
  const io = new PowerFs();
  const fd = io.open(file, 'create');
  io.write(fd, Buffer.from('hello'), 0);
  t.equal(io.readFile(file).toString(), 'hello', 'this process reads its own write');
  t.same(readdirSync(dir), [], 'the name is not on the disk before syncDir');
  io.fdatasync(fd);
  t.equal(new PowerFs().size(file), -1, 'after a cut: synced bytes but no name, so no file');
  io.syncDir(dir);
  t.equal(readFileSync(file, 'utf8'), 'hello');
  io.write(fd, Buffer.from('J'), 0);
  io.write(fd, Buffer.from('!'), 5);
  t.equal(io.readFile(file).toString(), 'Jello!');
  t.equal(new PowerFs().readFile(file).toString(), 'hello', 'unsynced writes die with the process');
  io.fdatasync(fd);
  io.close(fd);
  t.equal(new PowerFs().readFile(file).toString(), 'Jello!');
  t.end();
});

t.test('renames and unlinks wait for syncDir; writeFileAtomic is all or nothing', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'doc');
  const io = new PowerFs();
  writeFileAtomic(io, file, Buffer.from('v1'));
  t.equal(new PowerFs().readFile(file).toString(), 'v1');
  // Cut at every step of the second write: the file is v1 or v2, never torn, never missing.
  for (let n = 1; n <= 8; n++) {
    const before = new PowerFs().readFile(file).toString();
    const cutting = new PowerFs({ plan: { afterSteps: n }, cut });
    let finished = true;
    try {
      writeFileAtomic(cutting, file, Buffer.from(`v${n + 1}`));
    } catch (err) {
      if (!(err instanceof Cut)) throw err;
      finished = false;
    }
    const after = new PowerFs();
    const got = after.readFile(file).toString();
    t.ok(got === before || got === `v${n + 1}`, `cut at step ${n}: ${got}`);
    if (finished) t.equal(got, `v${n + 1}`, 'a write that returned holds');
    t.notOk(
      after.list(dir).some((f) => f.startsWith(HIDDEN_PREFIX)),
      'files never named are not listed',
    );
  }
  t.notOk(
    readdirSync(dir).some((f) => f.startsWith(HIDDEN_PREFIX)),
    'and a later list() frees them',
  );
  const io2 = new PowerFs();
  io2.unlink(file);
  t.equal(io2.size(file), -1);
  t.ok(new PowerFs().size(file) > 0, 'the unlink is not durable before syncDir');
  io2.syncDir(dir);
  t.equal(new PowerFs().size(file), -1);
  t.end();
});

t.test('a cut mid-flush keeps whole pages up to the cut, and junk turns a sector', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'seg');
  const setup = new PowerFs();
  writeFileAtomic(setup, file, Buffer.alloc(4 * PAGE, 0x61));
  const data = Buffer.alloc(3 * PAGE, 0x62);
  for (const junk of [false, true]) {
    const io = new PowerFs({ plan: { afterSteps: 2, junk }, cut });
    const fd = io.open(file, 'update');
    io.write(fd, data, 0);
    t.throws(() => io.fdatasync(fd), { message: 'power cut' });
    const disk = new PowerFs().readFile(file);
    t.ok(
      disk.subarray(0, PAGE).every((b) => b === 0x62),
      'the first page was written before the cut',
    );
    const second = disk.subarray(PAGE, PAGE + 512);
    if (junk)
      t.notOk(
        second.every((b) => b === 0x61),
        'the sector being written came back as junk',
      );
    else
      t.ok(
        second.every((b) => b === 0x61),
        'the page at the cut was not written',
      );
    t.ok(
      disk.subarray(PAGE + 512, 4 * PAGE).every((b) => b === 0x61),
      'nothing past the cut was written',
    );
    writeFileAtomic(new PowerFs(), file, Buffer.alloc(4 * PAGE, 0x61));
  }
  t.end();
});

t.test('truncate then extend reads zeros in between, before and after the flush', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'f');
  const io = new PowerFs();
  writeFileAtomic(io, file, Buffer.from('abcdefgh'));
  const fd = io.open(file, 'update');
  io.truncate(fd, 2);
  io.write(fd, Buffer.from('Z'), 5);
  const want = Buffer.from([0x61, 0x62, 0, 0, 0, 0x5a]);
  t.same(io.readFile(file), want);
  io.fdatasync(fd);
  io.close(fd);
  t.same(new PowerFs().readFile(file), want);
  t.end();
});

t.test('junk is the same for the same seed: zeros for an even one, noise for an odd one', (t) => {
  t.ok(
    junkSector(4).every((b) => b === 0),
    'even: zeros',
  );
  const odd = junkSector(7);
  t.ok(odd.equals(junkSector(7)), 'replayable');
  t.notOk(odd.equals(junkSector(9)), 'another seed, other bytes');
  t.ok(new Set(odd).size > 100, 'noise, not a pattern');
  const dir = tmp(t);
  const file = path.join(dir, 'seg');
  writeFileAtomic(new PowerFs(), file, Buffer.alloc(2 * PAGE, 0x61));
  const io = new PowerFs({ plan: { afterSteps: 1, junk: true, junkSeed: 7 }, cut });
  const fd = io.open(file, 'update');
  io.write(fd, Buffer.alloc(PAGE, 0x62), 0);
  t.throws(() => io.fdatasync(fd), { message: 'power cut' });
  t.ok(new PowerFs().readFile(file).subarray(0, 512).equals(odd), "the torn sector holds the seed's junk");
  t.end();
});
