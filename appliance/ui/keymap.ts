// What each key of the keypad does. A physical POS keypad is programmable and sends whatever keys its
// owner set up, so the till speaks in actions and a keymap file says which key is which action
// (docs/till-ui.md). The default suits a PC keyboard with a numeric block, and the Linux console.
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export const ACTIONS = [
  'digit0',
  'digit1',
  'digit2',
  'digit3',
  'digit4',
  'digit5',
  'digit6',
  'digit7',
  'digit8',
  'digit9',
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
  'quit',
  'none',
] as const;
export type Action = (typeof ACTIONS)[number];

/** Key names as blessed reports them (`key.full`): `a`, `*`, `enter`, `escape`, `f5`, `C-c`. */
export type Keymap = ReadonlyMap<string, Action>;

export const DEFAULT_KEYS: Readonly<Record<string, Action>> = {
  ...Object.fromEntries([...'0123456789'].map((d) => [d, `digit${d}` as Action])),
  ',': 'double0',
  '.': 'decimal',
  // blessed reports the Enter key (CR) twice, as `return` and as `enter`: only one of them is mapped.
  enter: 'enter',
  escape: 'clear',
  backspace: 'backspace',
  delete: 'void',
  v: 'void',
  '*': 'qty',
  x: 'qty',
  '+': 'subtotal',
  s: 'subtotal',
  '-': 'cash',
  c: 'cash',
  '/': 'card',
  k: 'card',
  f1: 'help',
  f2: 'shift',
  f3: 'refund',
  f4: 'reprint',
  f5: 'discount',
  f6: 'cancelSale',
  f7: 'noSale',
  f8: 'logout',
  f9: 'quick1',
  f10: 'quick2',
  f11: 'quick3',
  f12: 'quick4',
  'C-c': 'quit',
};

const KeymapFileSchema = z.strictObject({
  /** Start from no keys at all instead of the defaults. */
  replace: z.boolean().optional(),
  keys: z.record(z.string().min(1).max(20), z.enum(ACTIONS)),
});

export class KeymapError extends Error {
  override name = 'KeymapError';
}

export function defaultKeymap(): Keymap {
  return new Map(Object.entries(DEFAULT_KEYS));
}

/** A keymap file (JSON, docs/till-ui.md) over the defaults; a clear error naming the file and key. */
export function loadKeymap(file: string): Keymap {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new KeymapError(`keymap ${file}: ${(err as Error).message}`);
  }
  const parsed = KeymapFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.join('.') || 'file';
    const message =
      issue.code === 'invalid_value' || issue.code === 'invalid_key'
        ? `not an action (one of ${ACTIONS.join(', ')})`
        : issue.message;
    throw new KeymapError(`keymap ${file}: ${where}: ${message}`);
  }
  const map = new Map<string, Action>(parsed.data.replace ? [] : Object.entries(DEFAULT_KEYS));
  for (const [key, action] of Object.entries(parsed.data.keys)) {
    if (action === 'none') map.delete(key);
    else map.set(key, action);
  }
  return map;
}
