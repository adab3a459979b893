// The keymap file: the defaults, a file over them, and bad files refused with the key named.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ACTIONS,
  DEFAULT_KEYS,
  defaultKeymap,
  loadKeymap,
  type Action,
} from '../../../appliance/ui/keymap.js';
import { keymapFileFor, SITE_KEYMAP_FILE } from '../../../appliance/ui/main.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

t.test('the default keymap: every digit, Enter once, and the POS keys', async (t) => {
  const map = defaultKeymap();
  for (const d of '0123456789') t.equal(map.get(d), `digit${d}`);
  t.equal(map.get('enter'), 'enter');
  t.notOk(map.has('return'), 'blessed reports Enter as return too: mapped once only');
  t.equal(map.get('f2'), 'shift');
  t.equal(map.get('*'), 'qty');
});

t.test('a keymap file adds to the defaults, removes with none, or replaces them', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: { f13: 'cash', c: 'none', q: 'void' } }));
  const map = loadKeymap(file);
  t.equal(map.get('f13'), 'cash');
  t.notOk(map.has('c'), 'none removes a default key');
  t.equal(map.get('q'), 'void');
  t.equal(map.get('5'), 'digit5', 'the rest of the defaults stay');
  t.equal(map.size, Object.keys(DEFAULT_KEYS).length + 1);

  writeFileSync(file, JSON.stringify({ replace: true, keys: { a: 'digit1', enter: 'enter' } }));
  t.same(
    [...loadKeymap(file)],
    [
      ['a', 'digit1'],
      ['enter', 'enter'],
    ],
  );
});

t.test('a bad keymap file is refused with the file and the key named', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'keys.json');
  const refused = (content: string, re: RegExp) => {
    writeFileSync(file, content);
    t.throws(() => loadKeymap(file), re);
    t.throws(() => loadKeymap(file), { name: 'KeymapError' });
  };
  refused('{"keys": {"f1": "fly"}}', /keys\.f1: not an action/);
  refused('{"keys": {}, "colour": "red"}', /keys\.json: .*colour/);
  refused('{"keys": ', /keys\.json: .*JSON/);
  t.throws(() => loadKeymap(path.join(dir, 'missing.json')), /missing\.json/);
});

t.test('the shipped POS keypad keymap maps every key the issue lists, and nothing else', async (t) => {
  const file = path.join(root, 'appliance/ui/keymaps/pos-keypad.json');
  const map = loadKeymap(file);
  const mapped = new Set(map.values());
  // A keypad's legends (issue 6): digits, 00, decimal, Enter, Clear, Void, Qty, Subtotal, Cash, Card,
  // and the function keys the till has (help, the shift menu, refund … the quick cash amounts).
  const wanted: Action[] = [
    ...[...'0123456789'].map((d) => `digit${d}` as Action),
    'double0',
    'decimal',
    'enter',
    'clear',
    'backspace',
    'void',
    'qty',
    'subtotal',
    'cash',
    'card',
    'help',
    'shift',
    'refund',
    'reprint',
    'discount',
    'cancelSale',
    'noSale',
    'logout',
    'quick1',
    'quick2',
    'quick3',
    'quick4',
  ];
  for (const action of wanted) t.ok(mapped.has(action), `${action} is on the keypad`);
  t.same(
    ACTIONS.filter((a) => mapped.has(a)),
    ACTIONS.filter((a) => wanted.includes(a)),
    'and only those: no quit key (the appliance has no shell behind the till)',
  );
  t.notOk(map.has('c'), 'the PC keyboard letters are not kept (replace)');
});

t.test('register-ui takes --keymap, else the shop keymap when it exists, else the defaults', async (t) => {
  const dir = t.testdir({ 'keymap.json': '{"keys": {}}' });
  const site = path.join(dir, 'keymap.json');
  t.equal(keymapFileFor('/x/asked.json', site), '/x/asked.json');
  t.equal(keymapFileFor(undefined, site), site);
  t.equal(keymapFileFor(undefined, path.join(dir, 'missing.json')), undefined);
  t.equal(SITE_KEYMAP_FILE, '/etc/register/keymap.json');
});
