// The durable JSON store: round trips through lowdb on the real file system, the fallback decision
// table, the size bound, and a seeded power-cut campaign on the fault-injecting file system.
//
// Replay one seed:  CRASH_SEED=1234 npx tap test/unit/store/durable-json.test.ts
// Another sweep:    CRASH_SEED_BASE=50000 CRASH_SCENARIOS=20000 npx tap test/unit/store/durable-json.test.ts
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { isRegisterError } from '../../../appliance/errors.js';
import {
  DEFAULT_MAX_BYTES,
  DurableJsonAdapter,
  openDurableJson,
} from '../../../appliance/store/durable-json.js';
import { FaultFs, PowerCut } from '../../support/fault-fs.js';
import { Rng } from '../../support/rng.js';
import { must, runCampaign, scenarioCount } from '../../support/campaign.js';

const Settings = z.object({ version: z.number().int().nonnegative(), till: z.string() });
type Settings = z.infer<typeof Settings>;

const doc = (version: number): Settings => ({ version, till: `till-${version}` });
const json = (data: unknown) => Buffer.from(JSON.stringify(data));

t.test('round trip through LowSync on the real file system, creating the directories', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'state', 'store', 'settings.json');
  const db = openDurableJson<Settings>(file, { defaultData: doc(0), validate: Settings.parse });
  t.same(db.data, doc(0), 'nothing stored: the defaults');
  t.notOk(fs.existsSync(file), 'opening writes nothing');

  db.update((d) => {
    d.version = 1;
  });
  t.same(JSON.parse(fs.readFileSync(file, 'utf8')), { version: 1, till: 'till-0' });
  t.notOk(fs.existsSync(`${file}.prev`), 'no previous copy after the first write');

  db.data = doc(2);
  db.write();
  const again = openDurableJson<Settings>(file, { defaultData: doc(0), validate: Settings.parse });
  t.same(again.data, doc(2));
  t.same(JSON.parse(fs.readFileSync(`${file}.prev`, 'utf8')), { version: 1, till: 'till-0' });
  t.same(fs.readdirSync(path.dirname(file)).sort(), ['settings.json', 'settings.json.prev'], 'no temp files');
});

t.test('the defaults are copied, not shared', async (t) => {
  const defaults = doc(0);
  const db = openDurableJson<Settings>(path.join(t.testdir(), 's.json'), { defaultData: defaults });
  db.data.version = 9;
  t.equal(defaults.version, 0);
});

t.test('read() is null when neither copy exists, even with a left-over temp file', async (t) => {
  const io = new FaultFs(new Rng(1));
  io.put('/state/s.json.tmp', json(doc(1)));
  const fallbacks: string[] = [];
  const adapter = new DurableJsonAdapter<Settings>('/state/s.json', {
    fs: io,
    onFallback: (r) => fallbacks.push(r),
  });
  t.equal(adapter.read(), null);
  t.same(fallbacks, []);
});

t.test('a bad or missing file falls back to .prev and says why', async (t) => {
  const cases: [string, Buffer | undefined, RegExp][] = [
    ['garbage', Buffer.from('{"version": 3, "ti\0\0\0'), /not valid JSON/],
    ['0 bytes', Buffer.alloc(0), /is empty \(0 bytes\)/],
    ['missing', undefined, /is missing/],
    ['JSON null', Buffer.from('null'), /holds null/],
    ['refused by the validator', json({ version: 'three' }), /refused by its validator/],
  ];
  for (const [name, main, why] of cases) {
    const io = new FaultFs(new Rng(1));
    if (main) io.put('/state/s.json', main);
    io.put('/state/s.json.prev', json(doc(2)));
    const fallbacks: string[] = [];
    const adapter = new DurableJsonAdapter<Settings>('/state/s.json', {
      fs: io,
      validate: Settings.parse,
      onFallback: (r) => fallbacks.push(r),
    });
    t.same(adapter.read(), doc(2), `${name}: the previous copy`);
    t.equal(fallbacks.length, 1, `${name}: reported once`);
    t.match(fallbacks[0], why, name);
    t.match(fallbacks[0], '/state/s.json', `${name}: names the file`);
    t.match(fallbacks[0], 'using /state/s.json.prev', `${name}: names the copy used`);
  }
});

t.test('a good file is used as is, whatever .prev holds', async (t) => {
  const io = new FaultFs(new Rng(1));
  io.put('/state/s.json', json(doc(3)));
  io.put('/state/s.json.prev', Buffer.from('garbage'));
  const fallbacks: string[] = [];
  const adapter = new DurableJsonAdapter<Settings>('/state/s.json', {
    fs: io,
    onFallback: (r) => fallbacks.push(r),
  });
  t.same(adapter.read(), doc(3));
  t.same(fallbacks, []);
});

t.test('both copies bad, or a bad file with no copy: a clear error naming the files', async (t) => {
  const cases: [string, Buffer | undefined, Buffer | undefined, RegExp[]][] = [
    ['both garbage', Buffer.from('{'), Buffer.from('}'), [/not valid JSON.*not valid JSON/]],
    ['empty, no copy', Buffer.alloc(0), undefined, [/is empty/, /s\.json\.prev is missing/]],
    ['missing, copy empty', undefined, Buffer.alloc(0), [/it is missing/, /s\.json\.prev is empty/]],
    ['both refused', json({ version: -1 }), json({}), [/refused by its validator.*refused/]],
  ];
  for (const [name, main, prev, whys] of cases) {
    const io = new FaultFs(new Rng(1));
    io.mkdirp('/state');
    if (main) io.put('/state/s.json', main);
    if (prev) io.put('/state/s.json.prev', prev);
    const adapter = new DurableJsonAdapter<Settings>('/state/s.json', { fs: io, validate: Settings.parse });
    try {
      adapter.read();
      t.fail(`${name}: should throw`);
    } catch (err) {
      t.ok(isRegisterError(err, 'STORE_UNREADABLE'), `${name}: STORE_UNREADABLE`);
      const msg = (err as Error).message;
      t.match(msg, /^\/state\/s\.json cannot be read back/, `${name}: names the file`);
      t.match(msg, '/state/s.json.prev', `${name}: names the copy`);
      for (const why of whys) t.match(msg, why, `${name}: ${why}`);
    }
  }
});

t.test('a write after a fallback keeps the good .prev instead of copying the bad file over it', async (t) => {
  const io = new FaultFs(new Rng(1));
  io.put('/state/s.json', Buffer.from('garbage'));
  io.put('/state/s.json.prev', json(doc(2)));
  const adapter = new DurableJsonAdapter<Settings>('/state/s.json', { fs: io, validate: Settings.parse });
  t.same(adapter.read(), doc(2));
  adapter.write(doc(3));
  t.same(adapter.read(), doc(3));
  t.same(JSON.parse(io.readFile('/state/s.json.prev').toString()), doc(2), '.prev is still the good one');
  adapter.write(doc(4));
  t.same(JSON.parse(io.readFile('/state/s.json.prev').toString()), doc(3), 'and rotates from now on');
});

t.test('the size bound: a large document is refused before any I/O; a large file is not read', async (t) => {
  const io = new FaultFs(new Rng(1));
  const adapter = new DurableJsonAdapter<{ pad: string }>('/state/s.json', { fs: io, maxBytes: 100 });
  adapter.write({ pad: 'small' });
  const before = io.ops;
  try {
    adapter.write({ pad: 'x'.repeat(200) });
    t.fail('should throw');
  } catch (err) {
    t.ok(isRegisterError(err, 'STORE_TOO_LARGE'));
    t.match((err as Error).message, /\/state\/s\.json is 2\d\d bytes, over the 100-byte bound/);
  }
  t.equal(io.ops, before, 'nothing touched the disk');
  t.same(adapter.read(), { pad: 'small' });

  io.put('/state/s.json', json({ pad: 'y'.repeat(200) }));
  const fallbacks: string[] = [];
  const reader = new DurableJsonAdapter<{ pad: string }>('/state/s.json', {
    fs: io,
    maxBytes: 100,
    onFallback: (r) => fallbacks.push(r),
  });
  io.put('/state/s.json.prev', json({ pad: 'old' }));
  t.same(reader.read(), { pad: 'old' });
  t.match(fallbacks[0], /is 2\d\d bytes, over the 100-byte bound/);

  t.equal(DEFAULT_MAX_BYTES, 8 * 1024 * 1024);
  t.throws(() => new DurableJsonAdapter('/x.json', { maxBytes: 0 }), RangeError);
});

t.test('documents that would not read back are refused', async (t) => {
  const io = new FaultFs(new Rng(1));
  const adapter = new DurableJsonAdapter<unknown>('/state/s.json', { fs: io, validate: Settings.parse });
  for (const [name, bad] of [
    ['refused by the validator', { version: 'one' }],
    ['a BigInt', { version: 1n }],
    ['undefined', undefined],
    ['null', null],
  ] as [string, unknown][]) {
    t.throws(() => adapter.write(bad), { code: 'STORE_BAD_DOCUMENT' }, name);
  }
  t.equal(io.ops, 0, 'nothing touched the disk');
});

t.test('an I/O error fails the write, which is not acknowledged; the store stays usable', async (t) => {
  const io = new FaultFs(new Rng(1));
  const adapter = new DurableJsonAdapter<Settings>('/state/s.json', { fs: io });
  adapter.write(doc(1));
  for (const op of ['fdatasync', 'write', 'open'] as const) {
    io.failNext(op, 'EIO');
    t.throws(() => adapter.write(doc(2)), { code: 'STORE_WRITE_FAILED', details: { errno: 'EIO' } }, op);
    t.same(adapter.read(), doc(1), `${op}: the acknowledged document`);
  }
  io.capacityBytes = io.usedBytes() + 10;
  t.throws(() => adapter.write(doc(2)), { code: 'STORE_WRITE_FAILED', details: { errno: 'ENOSPC' } });
  io.clearFaults();
  adapter.write(doc(3));
  io.crash();
  t.same(new DurableJsonAdapter<Settings>('/state/s.json', { fs: io }).read(), doc(3));
});

t.test('the first write into a new directory survives a power cut', async (t) => {
  for (let seed = 1; seed <= 50; seed++) {
    const io = new FaultFs(new Rng(seed));
    new DurableJsonAdapter<Settings>('/var/lib/register/store/s.json', { fs: io }).write(doc(1));
    io.crash();
    const read = new DurableJsonAdapter<Settings>('/var/lib/register/store/s.json', { fs: io }).read();
    if (!isDeepStrictEqual(read, doc(1))) t.fail(`seed ${seed}: ${JSON.stringify(read)}`);
  }
  t.pass('50 seeds');
});

// ---- the power-cut campaign ----

const Catalog = z.object({
  version: z.number().int().positive(),
  products: z.array(z.object({ sku: z.string(), priceMinor: z.number().int() })),
  note: z.string(),
});
type Catalog = z.infer<typeof Catalog>;

interface Stats {
  powerCuts: number;
  cutsBeforeFirstAck: number;
  inFlightSurvived: number;
  inFlightLost: number;
  acked: number;
  damaged: number;
  damagedBeyondRepair: number;
}

function runScenario(seed: number, stats: Stats): void {
  const rng = new Rng(seed);
  const io = new FaultFs(new Rng(seed ^ 0x5eed));
  const file = rng.pick(['/state/catalog.json', '/state/store/deep/catalog.json']);
  const sent = new Map<number, Catalog>();
  let lastAcked = 0;
  let inFlight = 0;
  let version = 0;
  let fallbacks = 0;

  const adapter = () =>
    new DurableJsonAdapter<Catalog>(file, {
      fs: io,
      validate: Catalog.parse,
      onFallback: () => fallbacks++,
    });
  const next = (): Catalog => {
    version++;
    const products = Array.from({ length: rng.int(0, 40) }, (_, i) => ({
      sku: `sku-${version}-${i}`,
      priceMinor: rng.int(0, 99_999),
    }));
    const d = { version, products, note: 'n'.repeat(rng.int(0, 1500)) };
    sent.set(version, d);
    return d;
  };

  /** After a power cut: a complete document, the last acknowledged or the one in flight. */
  const check = (): void => {
    const before = fallbacks;
    const got = adapter().read();
    must(fallbacks === before, 'a power cut alone forced a fallback to .prev');
    if (got === null) {
      must(lastAcked === 0, `nothing read back, but version ${lastAcked} was acknowledged`);
      if (inFlight) stats.inFlightLost++;
    } else {
      must(
        got.version === lastAcked || (inFlight !== 0 && got.version === inFlight),
        `read version ${got.version}; acknowledged ${lastAcked}, in flight ${inFlight || 'none'}`,
      );
      must(
        isDeepStrictEqual(got, sent.get(got.version)),
        `version ${got.version} differs from what was sent`,
      );
      if (inFlight) {
        if (got.version === inFlight) stats.inFlightSurvived++;
        else stats.inFlightLost++;
      }
      lastAcked = got.version; // durable now: nothing older may come back
    }
    inFlight = 0;
  };

  const rounds = rng.int(1, 4);
  for (let round = 0; round < rounds; round++) {
    const store = adapter();
    const writes = rng.int(1, 6);
    // About twelve mutating operations per write: two atomic replaces, plus the first one's mkdirs.
    if (rng.chance(0.85)) io.cutPowerAfter(rng.int(1, writes * 12 + 4));
    try {
      for (let i = 0; i < writes; i++) {
        const d = next();
        inFlight = d.version;
        store.write(d);
        lastAcked = d.version;
        inFlight = 0;
        stats.acked++;
      }
    } catch (err) {
      must(
        io.isDead && isRegisterError(err, 'STORE_WRITE_FAILED') && err.cause instanceof PowerCut,
        `unexpected error: ${String((err as Error)?.stack ?? err)}`,
      );
      stats.powerCuts++;
      if (lastAcked === 0) stats.cutsBeforeFirstAck++;
    }
    io.clearFaults();
    io.crash();
    check();

    // Now and then the medium damages the file: read() must fall back to an older complete copy (or
    // say it cannot), and the next write must repair the store.
    if (lastAcked > 0 && rng.chance(0.15)) {
      stats.damaged++;
      io.corrupt(file, rng.int(0, io.size(file) - 1), Buffer.from([0]));
      const before = fallbacks;
      let got: Catalog | null = null;
      try {
        got = adapter().read();
      } catch (err) {
        must(isRegisterError(err, 'STORE_UNREADABLE'), `damage: unexpected error ${String(err)}`);
        stats.damagedBeyondRepair++;
      }
      if (got) {
        must(fallbacks === before + 1, 'damage: the fallback was not reported');
        must(got.version <= lastAcked, `damage: .prev holds version ${got.version} > ${lastAcked}`);
        must(isDeepStrictEqual(got, sent.get(got.version)), `damage: .prev version ${got.version} differs`);
      }
      const d = next();
      adapter().write(d);
      lastAcked = d.version;
      stats.acked++;
      must(isDeepStrictEqual(adapter().read(), d), 'damage: the next write did not repair the store');
    }
  }
}

t.test(`durable JSON survives ${scenarioCount(3000)} seeded power-cut scenarios`, async (t) => {
  const stats: Stats = {
    powerCuts: 0,
    cutsBeforeFirstAck: 0,
    inFlightSurvived: 0,
    inFlightLost: 0,
    acked: 0,
    damaged: 0,
    damagedBeyondRepair: 0,
  };
  runCampaign(t, {
    defaultScenarios: 3000,
    stats,
    replay: 'test/unit/store/durable-json.test.ts',
    scenario: runScenario,
  });
});
