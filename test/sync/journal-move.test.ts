// A register's card replaced with sales still unsynced, end to end: the register sells (some sales
// reach the ledger, then the link goes and it keeps selling), stops, its journal is exported with
// `registerctl journal export`, the card is wiped, the archive imported with `journal import`, and
// registerd started on it recovers the same journal and drains it: the ledger books every sale once.
import t from 'tap';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { main, type Io } from '../../appliance/control/registerctl.js';
import { Rng } from '../support/rng.js';
import { Harness, SKUS, assertBooks, cursorOf, sellMany } from '../support/sync-fixtures.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), env: {} };
  return { io, out, err };
}

t.test('unsynced sales survive a card swap through export and import, booked once', async (t) => {
  const h = await Harness.create(t, 'aedes-sqlite');
  const rng = new Rng(808);
  await h.startLedger();
  for (const sku of SKUS) await h.receive(sku, 1000);

  const till = await h.till('till-1');
  await till.openShift();
  await sellMany(till, rng, 6);
  const synced = await h.settle(till);
  // The link goes; the register keeps selling on its card.
  till.proxy.setOnline(false);
  await sellMany(till, rng, 9);
  const before = await till.status();
  t.ok(before.lastSeq > synced.lastSeq, 'sales waiting on the card');
  await till.stop();
  const acked = JSON.parse(readFileSync(path.join(till.stateDir, 'sync.json'), 'utf8')) as {
    ackedThrough: number;
  };
  t.equal(acked.ackedThrough, synced.lastSeq, 'the bridge saved what the ledger acknowledged');

  const archive = path.join(path.dirname(till.stateDir), 'till-1.regjournal');
  let c = capture();
  t.equal(await main(['journal', 'export', path.join(till.stateDir, 'journal'), '--out', archive], c.io), 0);
  t.match(JSON.parse(c.out[0]!), {
    complete: true,
    epoch: before.epoch,
    lastSeq: before.lastSeq,
    ackedThrough: synced.lastSeq,
    unsynced: before.lastSeq - synced.lastSeq,
  });

  // The new card: nothing of the old one but the archive (the config's seed files bring the catalog).
  rmSync(till.stateDir, { recursive: true, force: true });
  // Its first boot starts registerd on an empty journal of a new epoch, before anyone imports.
  await till.start();
  const fresh = await till.status();
  t.equal(fresh.lastSeq, 0, 'a fresh register journals nothing by itself');
  t.not(fresh.epoch, before.epoch);
  await till.stop();
  c = capture();
  t.equal(
    await main(['journal', 'import', archive, '--state-dir', till.stateDir], c.io),
    0,
    c.err.join('\n'),
  );
  t.match(JSON.parse(c.out[0]!), { imported: true, replaced: ['00000001.seg'] });
  t.match(JSON.parse(readFileSync(path.join(till.stateDir, 'sync.json'), 'utf8')), {
    epoch: before.epoch,
    ackedThrough: synced.lastSeq,
  });

  await till.start();
  const after = await till.status();
  t.match(after, { epoch: before.epoch, lastSeq: before.lastSeq }, 'the same journal, recovered');
  t.match(after.sync, { ackedThrough: synced.lastSeq }, 'nothing the ledger had is sent as new');
  till.proxy.setOnline(true);
  // It goes on selling on the new card, in the same epoch, after the imported records.
  await sellMany(till, rng, 3);
  const snap = await h.settle(till);
  t.ok(snap.lastSeq > before.lastSeq);
  t.equal(await cursorOf(await h.books(), till.deviceId, before.epoch), snap.lastSeq);
  h.stock.fromBook(till.book);
  await assertBooks(t, await h.books(), { tills: [snap], stock: h.stock });
});
