#!/usr/bin/env node
// register-provision: apply the provisioning files on the boot partition once (first boot), or make a
// manager's PIN hash for a hand-written provision.txt. docs/operators.md, "Provisioning".
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { jsonLogger, type Logger } from '../log.js';
import { hashPin, PIN_FORMAT } from '../till/cashiers.js';
import { provision } from './apply.js';
import { ProvisionError } from './format.js';

const USAGE = `usage: register-provision --boot DIR --data DIR [--etc DIR]
       register-provision hash-pin            (reads the PIN on stdin, prints its hash)`;

/** Exit statuses (sysexits.h), so a unit or a script can tell what went wrong. */
export const EXIT = {
  ok: 0,
  usage: 64,
  /** No provisioning file and never provisioned. */
  noInput: 66,
  /** A file is refused, or the data partition belongs to another device: nothing was changed. */
  config: 78,
  /** Reading or writing failed part way; running again finishes the job. */
  ioError: 74,
} as const;

export interface MainIo {
  out: (s: string) => void;
  err: (s: string) => void;
  log: Logger;
  stdin: () => Buffer;
}

const defaultIo: MainIo = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  log: jsonLogger('provision'),
  stdin: () => readFileSync(0),
};

export function main(argv: string[], io: MainIo = defaultIo): number {
  if (argv[0] === 'hash-pin') {
    if (argv.length > 1) return usage(io);
    const pin = io.stdin().toString('utf8').trim();
    if (!PIN_FORMAT.test(pin)) {
      io.log.error({ code: 'USAGE' }, 'a PIN is 4 to 8 digits');
      return EXIT.usage;
    }
    io.out(`${hashPin(pin)}\n`);
    return EXIT.ok;
  }
  let values: { boot?: string; data?: string; etc?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { boot: { type: 'string' }, data: { type: 'string' }, etc: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch {
    return usage(io);
  }
  if (!values.boot || !values.data) return usage(io);
  try {
    const result = provision({ bootDir: values.boot, dataDir: values.data, etcDir: values.etc ?? '/etc' });
    const msg = {
      applied: 'provisioned',
      completed: 'provisioning completed: secrets removed from the boot partition',
      unchanged: 'already provisioned with these files; nothing changed',
      'not-present': 'already provisioned; no provisioning file on the boot partition',
    }[result.outcome];
    io.log.info({ outcome: result.outcome, deviceId: result.deviceId, changed: result.changed }, msg);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof ProvisionError) {
      // One line per problem as well as the JSON line, for a person at the console.
      io.log.error({ code: err.code, issues: err.issues }, 'nothing was changed');
      for (const issue of err.issues) io.err(`register-provision: ${issue}\n`);
      return err.code === 'PROVISION_MISSING' ? EXIT.noInput : EXIT.config;
    }
    const e = err as NodeJS.ErrnoException;
    io.log.error({ code: e.code ?? 'IO', err: e.message }, 'provisioning stopped part way; run it again');
    return EXIT.ioError;
  }
}

function usage(io: MainIo): number {
  io.log.error({ code: 'USAGE' }, USAGE);
  return EXIT.usage;
}

// Run when executed (also through the npm bin symlink), not when imported by tests.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
