// The keymap file: the defaults, a file over them, and bad files refused with the key named.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_KEYS, defaultKeymap, loadKeymap } from '../../../appliance/ui/keymap.js';

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
