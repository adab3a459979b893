// Device work happens after the record is durable and never stands in a sale's way: a printer that
// hangs does not delay the answer, a failing one does not fail the sale, and the work runs in order.
import t from 'tap';
import { readyRegister, code } from '../../support/till-fixtures.js';
import type { receiptDoc } from '../../../appliance/till/commands.js';

type Doc = ReturnType<typeof receiptDoc>;

t.test('a hanging printer does not hold up the answer or the next command', async (t) => {
  const done: string[] = [];
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const r = await readyRegister({
    devices: {
      kickDrawer: async () => void done.push('drawer'),
      print: async (doc: Doc) => {
        await hung;
        done.push(`print ${doc.receiptNo}`);
      },
    },
  });
  await r.register.drain();
  t.same(done.splice(0), ['drawer'], 'opening the shift opened the drawer for the float');
  await r.call('sale.scan', { code: code('COF-250') });
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 }), {
    completed: true,
    receiptNo: 1,
  });
  await r.call('sale.scan', { code: code('WAT-150') });
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 100 }), { completed: true, receiptNo: 2 });
  t.same(done, ['drawer'], 'the sales were answered while the first receipt was still printing');
  release();
  await r.register.drain();
  t.same(done, ['drawer', 'print 1', 'drawer', 'print 2'], 'device work ran in order, after the fact');
});

t.test('a failing printer never fails a sale; the error shows in status until a print works', async (t) => {
  let fail = true;
  const printed: number[] = [];
  const r = await readyRegister({
    devices: {
      print: async (doc: Doc) => {
        if (fail) throw new Error('printer on fire');
        printed.push(doc.receiptNo);
      },
    },
  });
  await r.call('sale.scan', { code: code('COF-250') });
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 }), { completed: true });
  await r.register.drain();
  t.equal(r.register.status().printError, 'printer on fire');
  t.equal(r.register.state.receiptNo, 1, 'the sale is in the books');
  fail = false;
  await r.call('receipt.reprint', { receiptNo: 1 });
  await r.register.drain();
  t.same(printed, [1]);
  t.equal(r.register.status().printError, null);
});

t.test(
  'an fsync error is fatal whoever asked for the write: a control call, a scan, a terminal',
  async (t) => {
    for (const via of ['control', 'scan', 'saf'] as const) {
      const fatal: string[] = [];
      const r = await readyRegister({ onFatal: (err) => fatal.push(err.code) });
      r.terminal.online = false;
      await r.call('sale.scan', { code: code('COF-250') });
      await r.call('sale.tender', { kind: 'card' }); // approved offline: a SAF outcome is owed
      const [txn] = Object.keys(r.register.state.offlineCard);
      r.io.failNext('fdatasync', 'EIO');
      if (via === 'control')
        await t.rejects(r.call('sale.scan', { code: code('WAT-150') }), { code: 'JOURNAL_FATAL' });
      else if (via === 'scan')
        t.match(await r.register.scanned(code('WAT-150')), { ok: false, error: { code: 'JOURNAL_FATAL' } });
      else
        await t.rejects(r.register.onTerminalEvent({ type: 'saf.result', txn: txn!, outcome: 'approved' }), {
          code: 'JOURNAL_FATAL',
        });
      t.same(fatal, ['JOURNAL_FATAL'], `${via}: the daemon is told to exit`);
    }
  },
);
