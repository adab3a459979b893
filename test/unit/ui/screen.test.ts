// The till's drawing helpers without a terminal: the message wrapped into its two rows.
import t from 'tap';
import { MESSAGE_ROWS, wrapMessage } from '../../../appliance/ui/screen.js';

t.test('a refusal wraps onto the second row with its last words kept', async (t) => {
  // The register's own words for a card over the offline limit (appliance/till/commands.ts).
  const refusal =
    'Card payments are offline and 259.60 EUR is over the offline limit of 250.00 EUR: take cash or another tender.';
  const rows = wrapMessage(refusal, 78);
  t.equal(rows.length, 2);
  t.ok(
    rows.every((r) => r.length <= 78),
    'every row within the width',
  );
  t.equal(rows.join(' '), refusal, 'nothing lost, broken at a space');
  t.match(rows[1], /take cash or another tender\.$/);
});

t.test('short text is one row; text past the rows ends in an ellipsis; long words are split', async (t) => {
  t.same(wrapMessage('Welcome, Ana', 78), ['Welcome, Ana']);
  t.same(wrapMessage('', 78), []);
  const long = wrapMessage('word '.repeat(100), 20);
  t.equal(long.length, MESSAGE_ROWS);
  t.ok(long[1]!.endsWith('…') && long[1]!.length <= 20);
  t.same(wrapMessage('x'.repeat(25), 10), ['x'.repeat(10), `${'x'.repeat(9)}…`]);
});
