// The receipt renderer on receipts from a real Register (demo catalog, seeded ids, manual clock): the
// ESC/POS bytes, the SVG and the text come from one description; no card number but the last four.
import t from 'tap';
import { formatMinor } from '../../../appliance/till/money.js';
import {
  maskPan,
  receiptMarkdown,
  renderReceiptEscPos,
  renderReceiptSvg,
  renderReceiptText,
  type ReceiptDoc,
} from '../../../appliance/devices/printer/receipt-render.js';
import { receipts } from '../../support/receipt-fixtures.js';

type SaleDoc = Extract<ReceiptDoc, { kind: 'sale' }>;

const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
const has = (hay: Uint8Array, needle: number[]): boolean =>
  latin1(hay).includes(String.fromCharCode(...needle));
const ESC_P = [0x1b, 0x70];
const CUT = [0x1d, 0x56]; // GS V

t.test('a sale receipt as ESC/POS bytes', async (t) => {
  const { sale } = await receipts();
  t.equal(sale.kind, 'sale');
  t.ok(sale.offline, 'nothing synced yet: the doc says offline');
  const bytes = renderReceiptEscPos(sale, { columns: 42 });
  const s = latin1(bytes);
  t.same([...bytes.slice(0, 2)], [0x1b, 0x40], 'starts with ESC @');
  t.ok(s.includes('Corner Shop (demo)'), 'store name');
  t.ok(s.includes(formatMinor(sale.totalMinor, 'EUR')), `total ${formatMinor(sale.totalMinor, 'EUR')}`);
  t.ok(s.includes(formatMinor(sale.changeMinor, 'EUR')), 'change');
  t.ok(s.includes(`No. ${sale.receiptNo}`), 'receipt number');
  t.ok(s.includes('Cashier Ana'), 'cashier');
  t.ok(s.includes('2 x 0.89 EUR'), 'qty x unit');
  t.ok(s.includes('-0.65 EUR'), 'line discount');
  t.ok(s.includes('VAT 7%'), 'tax breakdown');
  t.ok(s.includes('OFFLINE'), 'OFFLINE marker');
  t.ok(s.includes(sale.chain) && sale.chain.length === 12, 'short chain hash');
  t.ok(s.includes(sale.saleId), 'sale id');
  t.ok(s.includes('**** 4242'), 'masked card');
  t.ok(has(bytes, CUT), 'cut');
  t.ok(s.lastIndexOf(String.fromCharCode(...CUT)) > s.lastIndexOf(sale.saleId), 'cut after the text');
  t.notOk(has(bytes, ESC_P), 'no drawer kick unless asked');
  t.notOk(/\d{13,19}/.test(s), 'no card-number-length digit run');
});

t.test('online receipts carry no OFFLINE marker', async (t) => {
  const { sale } = await receipts();
  const s = latin1(renderReceiptEscPos({ ...sale, offline: false }, { columns: 48 }));
  t.notOk(s.includes('OFFLINE'));
  t.ok(s.includes(sale.saleId));
});

t.test('drawer kick: ESC p right after the set-up, before any text', async (t) => {
  const { sale } = await receipts();
  const s = latin1(renderReceiptEscPos(sale, { columns: 42, drawerKick: true }));
  const kick = s.indexOf(String.fromCharCode(0x1b, 0x70, 0, 25, 250));
  t.ok(kick > 0, 'default kick bytes present');
  t.ok(kick < s.indexOf('Corner Shop'), 'before the first line, so a paper-out still opens the drawer');
  const pin5 = latin1(
    renderReceiptEscPos(sale, { columns: 42, drawerKick: { pin: 5, onMs: 100, offMs: 400 } }),
  );
  t.ok(pin5.includes(String.fromCharCode(0x1b, 0x70, 1, 50, 200)), 'pin 5, custom timing');
});

t.test('a full PAN handed over by a terminal never reaches the paper', async (t) => {
  const { sale } = await receipts();
  const leaky: SaleDoc = {
    ...sale,
    tenders: sale.tenders.map((x) => (x.kind === 'card' ? { ...x, maskedPan: '4111111111111111' } : x)),
  };
  for (const columns of [42, 48] as const) {
    const s = latin1(renderReceiptEscPos(leaky, { columns }));
    t.notOk(/\d{16}/.test(s), `${columns}: no 16-digit number`);
    t.notOk(s.includes('41111111'), `${columns}: no PAN prefix`);
    t.ok(s.includes('**** 1111'), `${columns}: last four only`);
    t.notOk(renderReceiptSvg(leaky, { columns }).includes('4111111111'), `${columns}: not in the SVG`);
  }
  t.equal(maskPan('************4242'), '**** 4242');
  t.equal(maskPan('4111 1111 1111 1111'), '**** 1111');
  t.equal(maskPan(undefined), '****');
  t.equal(maskPan('12'), '****');
});

t.test('width: every text line fits the configured columns', async (t) => {
  const { sale, refund } = await receipts();
  for (const columns of [42, 48] as const) {
    for (const doc of [sale, refund]) {
      const lines = renderReceiptText(doc, { columns }).split('\n');
      const widest = Math.max(...lines.map((l) => l.length));
      t.ok(widest <= columns, `${doc.kind} at ${columns}: widest line ${widest}`);
    }
  }
});

t.test('shop text cannot inject ReceiptLine markup or printer commands', async (t) => {
  const { sale } = await receipts();
  const doc: SaleDoc = { ...sale, storeName: 'Bad | {command:\\x1bp} =\u001bp\u0000\u0019' };
  const md = receiptMarkdown(doc, { columns: 42 });
  t.ok(md.includes('\\{command'), 'the brace is escaped');
  t.notOk(/(^|[^\\])\{command/m.test(md), 'so it is no property');
  const s = latin1(renderReceiptEscPos(doc, { columns: 42 }));
  t.notOk(s.includes(String.fromCharCode(0x1b, 0x70)), 'no ESC p from the store name');
  t.ok(s.includes('Bad | '), 'the text itself is printed');
});

t.test('a refund receipt', async (t) => {
  const { refund } = await receipts();
  t.equal(refund.kind, 'refund');
  const s = latin1(renderReceiptEscPos(refund, { columns: 48, drawerKick: true }));
  t.same([...Buffer.from(s, 'latin1').subarray(0, 2)], [0x1b, 0x40]);
  t.ok(s.includes(`Refund of receipt No. ${refund.originalReceiptNo}`));
  t.ok(s.includes(formatMinor(refund.amountMinor, 'EUR')), 'amount');
  t.ok(s.includes(refund.refundId), 'refund id');
  t.ok(has(Buffer.from(s, 'latin1'), CUT), 'cut');
  t.ok(s.includes(String.fromCharCode(0x1b, 0x70)), 'drawer kick for the cash paid out');
});

t.test('the same receipt as SVG and as text', async (t) => {
  const { sale } = await receipts();
  const svg = renderReceiptSvg(sale, { columns: 48 });
  t.match(svg, /^<svg /);
  // The SVG places each character in its own <tspan>: read the glyphs back in order.
  const glyphs = [...svg.matchAll(/<tspan[^>]*>([^<]*)<\/tspan>/g)].map((m) => m[1]).join('');
  t.ok(glyphs.includes('Corner&#xa0;Shop&#xa0;(demo)'), 'store name in the SVG');
  t.ok(glyphs.includes('4242') && !/\d{13,19}/.test(glyphs), 'last four only');
  const text = renderReceiptText(sale, { columns: 48 });
  t.ok(text.includes('Subtotal') && text.includes('Change') && text.includes('**** 4242'));
  t.ok(text.includes('2026-01-01 00:00:00'), 'time in UTC by default');
  t.ok(renderReceiptText(sale, { columns: 48, timeZone: 'Europe/Berlin' }).includes('2026-01-01 01:00:00'));
});
