import t from 'tap';
import { createServer } from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { main, type Io } from '../../../appliance/control/registerctl.js';
import { Journal } from '../../../appliance/journal/journal.js';
import { FIRST_FRAME_OFFSET } from '../../../appliance/journal/format.js';
import { scanJournal } from '../../../appliance/journal/scan.js';
import { nodeFs } from '../../../appliance/journal/fs.js';
import { sale } from '../../support/journal-fixtures.js';

function capture(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), env };
  return { io, out, err };
}

function journalWith(dir: string, n: number): void {
  const j = Journal.open({ dir, deviceId: 'till-9', epoch: 4 });
  for (let i = 1; i <= n; i++) j.append(sale(i));
  j.close();
}

t.test('journal verify summarises a clean journal and a torn tail, exit 0', async (t) => {
  const dir = path.join(t.testdir(), 'journal');
  journalWith(dir, 3);
  let c = capture();
  t.equal(await main(['journal', 'verify', dir], c.io), 0);
  const report = JSON.parse(c.out[0]!);
  t.match(report, {
    ok: true,
    deviceId: 'till-9',
    epoch: 4,
    segments: 1,
    records: 3,
    firstSeq: 1,
    lastSeq: 3,
  });
  t.equal(report.problem, null);

  const seg = path.join(dir, '00000001.seg');
  const bytes = readFileSync(seg);
  Buffer.from([9, 0, 0, 0, 1]).copy(bytes, scanJournal(nodeFs, dir, { useCheckpoint: false }).end!.offset);
  writeFileSync(seg, bytes);
  c = capture();
  t.equal(await main(['journal', 'verify', dir], c.io), 0, 'a torn tail is what a power cut leaves');
  t.equal(JSON.parse(c.out[0]!).tornTailBytes, 5);
});

t.test('journal verify exits 1 with the finding on damage, and never writes', async (t) => {
  const dir = path.join(t.testdir(), 'journal');
  journalWith(dir, 3);
  const seg = path.join(dir, '00000001.seg');
  const bytes = readFileSync(seg);
  bytes[FIRST_FRAME_OFFSET + 20] ^= 0xff;
  writeFileSync(seg, bytes);
  const c = capture();
  t.equal(await main(['journal', 'verify', dir], c.io), 1);
  const report = JSON.parse(c.out[0]!);
  t.match(report, {
    ok: false,
    problem: { finding: 'bad-frame', code: 'JOURNAL_CORRUPT', offset: FIRST_FRAME_OFFSET },
  });
  t.match(c.err[0], /JOURNAL_CORRUPT/);
  t.same(readFileSync(seg), bytes, 'unchanged');
  t.same(readdirSync(path.dirname(dir)), ['journal'], 'no quarantine copy from a read-only tool');
});

t.test('journal dump prints records as JSON lines, from a seq', async (t) => {
  const dir = path.join(t.testdir(), 'journal');
  journalWith(dir, 5);
  let c = capture();
  t.equal(await main(['journal', 'dump', dir], c.io), 0);
  t.same(
    c.out.map((l) => JSON.parse(l).seq),
    [1, 2, 3, 4, 5],
  );
  c = capture();
  t.equal(await main(['journal', 'dump', dir, '--from', '4'], c.io), 0);
  t.same(
    c.out.map((l) => JSON.parse(l).events[0].saleId),
    ['s-4', 's-5'],
  );
});

t.test('usage errors exit 2 with a clear message', async (t) => {
  for (const argv of [
    [],
    ['journal'],
    ['journal', 'fix', '/x'],
    ['journal', 'dump', '.', '--from', 'x'],
    ['status', '{bad'],
  ]) {
    const c = capture();
    t.equal(await main(argv, c.io), 2, argv.join(' '));
    t.match(JSON.parse(c.out[0]!), { error: { code: 'USAGE' } });
  }
  const c = capture();
  t.equal(await main(['journal', 'verify', '/nonexistent/journal'], c.io), 2);
});

t.test('a control call prints the result, or the error code and exits 1', async (t) => {
  // Unix socket paths are limited to 108 bytes: keep them short.
  const dir = mkdtempSync(path.join(tmpdir(), 'reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'control.sock');
  const seen: unknown[] = [];
  const server = createServer((conn) => {
    conn.setEncoding('utf8');
    conn.on('data', (line: string) => {
      const req = JSON.parse(line);
      seen.push(req);
      conn.write(JSON.stringify({ event: 'state', data: {} }) + '\n'); // chatter is skipped
      if (req.method === 'status')
        conn.write(JSON.stringify({ id: req.id, result: { online: false } }) + '\n');
      else
        conn.write(JSON.stringify({ id: req.id, error: { code: 'UNKNOWN_METHOD', message: 'no' } }) + '\n');
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => server.close());

  let c = capture({ REGISTER_STATE_DIR: dir });
  t.equal(await main(['status'], c.io), 0);
  t.same(JSON.parse(c.out[0]!), { online: false });
  c = capture();
  t.equal(await main(['--socket', socket, 'frobnicate', '{"a":1}'], c.io), 1);
  t.match(JSON.parse(c.out[0]!), { error: { code: 'UNKNOWN_METHOD' } });
  t.match(seen[1], { method: 'frobnicate', params: { a: 1 } });
  c = capture();
  t.equal(await main(['--socket', path.join(dir, 'nobody.sock'), 'status'], c.io), 1);
  t.match(JSON.parse(c.out[0]!), { error: { code: 'CONTROL_UNAVAILABLE' } });
});

t.test('the registerctl command runs as a process', async (t) => {
  const dir = path.join(t.testdir(), 'journal');
  journalWith(dir, 2);
  const bin = path.resolve('appliance/control/registerctl.ts');
  const ok = spawnSync(process.execPath, ['--import', 'tsx', bin, 'journal', 'verify', dir], {
    encoding: 'utf8',
  });
  t.equal(ok.status, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout), { ok: true, lastSeq: 2 });
  const bad = spawnSync(process.execPath, ['--import', 'tsx', bin, 'journal'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /USAGE/);
});
