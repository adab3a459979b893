// registerd as a real process under a real notify socket, with the real systemd-notify: what systemd
// would hear. Node cannot bind a unix datagram socket, so a small python3 receiver plays PID 1: it
// reads each datagram with its sender's credentials, closes the fd of systemd-notify's BARRIER=1 (as
// PID 1 does, which lets systemd-notify exit), and, on READY=1, checks at that very moment that the
// control socket accepts a connection.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from '../../scripts/lib/bundle.js';
import { controlCaller } from '../support/registerd-process.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE } from '../support/till-fixtures.js';
import { waitFor } from '../support/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const RECEIVER = String.raw`
import array, json, os, socket, sys
notify_path, control_path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(notify_path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"bound": True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64 * 4) + socket.CMSG_SPACE(12))
    pid, fds = None, 0
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % 4])
            for fd in got:
                os.close(fd)
                fds += 1
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = int.from_bytes(payload[0:4], sys.byteorder)
    msg = {"vars": data.decode().split("\n"), "pid": pid, "fds": fds}
    if "READY=1" in msg["vars"]:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            c.connect(control_path)
            msg["listening"] = True
        except OSError as e:
            msg["listening"] = str(e)
        c.close()
    print(json.dumps(msg), flush=True)
`;

interface Datagram {
  vars: string[];
  pid: number | null;
  fds: number;
  listening?: true | string;
}

t.test('prerequisites', async (t) => {
  for (const [cmd, arg] of [
    ['systemd-notify', '--version'],
    ['python3', '--version'],
  ] as const)
    t.equal(spawnSync(cmd, [arg]).status, 0, `${cmd} is installed`);
});

t.test('registerd under a notify socket: READY once listening, watchdog pings, STOPPING', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'regd-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);
  const notifySocket = path.join(dir, 'notify.sock');
  const controlSocket = path.join(dir, 'state', 'control.sock');
  const config = path.join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: 'till-notify',
      storeId: 'demo-store',
      stateDir: path.join(dir, 'state'),
      clock: { assumeTrusted: true },
      seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
    }),
  );

  const receiver = spawn('python3', ['-u', '-c', RECEIVER, notifySocket, controlSocket], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => receiver.kill('SIGKILL'));
  const heard: Datagram[] = [];
  let bound = false;
  let receiverErr = '';
  let buf = '';
  receiver.stdout!.setEncoding('utf8');
  receiver.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, nl)) as Datagram & { bound?: true };
      buf = buf.slice(nl + 1);
      if (line.bound) bound = true;
      else heard.push(line);
    }
  });
  receiver.stderr!.setEncoding('utf8');
  receiver.stderr!.on('data', (chunk: string) => (receiverErr += chunk));
  await waitFor(`the receiver to bind ${receiverErr}`, () => bound);

  const env: Record<string, string | undefined> = {
    ...process.env,
    NOTIFY_SOCKET: notifySocket,
    // WatchdogSec=1s: pings every 500 ms.
    WATCHDOG_USEC: '1000000',
  };
  delete env.WATCHDOG_PID;
  const daemon = spawn(process.execPath, [bin, '--config', config], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => daemon.kill('SIGKILL'));
  let log = '';
  daemon.stderr!.setEncoding('utf8');
  daemon.stderr!.on('data', (chunk: string) => (log = (log + chunk).slice(-200_000)));
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));

  const vars = () => heard.flatMap((d) => d.vars.filter((v) => v !== 'BARRIER=1'));
  const ready = await waitFor('READY=1', () => heard.find((d) => d.vars.includes('READY=1')));
  t.equal(ready.listening, true, 'the control socket accepted a connection when READY=1 arrived');
  t.match(await controlCaller(controlSocket)('status'), { deviceId: 'till-notify' });
  t.ok(
    heard.some((d) => d.vars.includes('BARRIER=1') && d.fds === 1),
    'systemd-notify waited for PID 1 (BARRIER=1 with its fd): attribution does not race its exit',
  );

  await waitFor('three watchdog pings', () => vars().filter((v) => v === 'WATCHDOG=1').length >= 3, {
    timeoutMs: 15_000,
  });
  t.notOk(
    vars().some((v) => v.startsWith('STATUS=unhealthy')),
    'healthy: nothing withheld',
  );

  daemon.kill('SIGTERM');
  t.equal(await exited, 0, 'a clean stop');
  const all = vars();
  t.equal(all.filter((v) => v === 'READY=1').length, 1, 'READY=1 once');
  t.equal(all.filter((v) => v === 'STOPPING=1').length, 1, 'STOPPING=1 once, delivered before the exit');
  t.ok(all.indexOf('READY=1') < all.indexOf('STOPPING=1'), 'READY before STOPPING');
  t.notOk(log.includes('systemd notification failed'), 'no failed notification in the log');
});

t.test('without NOTIFY_SOCKET registerd runs as before and spawns no systemd-notify', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'regd-nonotify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);
  const config = path.join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({ deviceId: 'till-plain', storeId: 'demo-store', stateDir: path.join(dir, 'state') }),
  );
  // A PATH whose systemd-notify fails loudly: were it run, the daemon would log the failure.
  const fakeBin = path.join(dir, 'bin');
  const fake = path.join(fakeBin, 'systemd-notify');
  mkdirSync(fakeBin);
  writeFileSync(fake, `#!/bin/sh\ntouch ${JSON.stringify(path.join(dir, 'ran'))}\nexit 1\n`);
  chmodSync(fake, 0o755);
  const env: Record<string, string | undefined> = {
    ...process.env,
    PATH: `${fakeBin}:${process.env.PATH ?? ''}`,
    WATCHDOG_USEC: '1000000',
  };
  delete env.NOTIFY_SOCKET;
  const daemon = spawn(process.execPath, [bin, '--config', config], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => daemon.kill('SIGKILL'));
  let log = '';
  daemon.stderr!.setEncoding('utf8');
  daemon.stderr!.on('data', (chunk: string) => (log += chunk));
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
  await waitFor('ready', () => log.includes('"msg":"ready"'));
  t.match(await controlCaller(path.join(dir, 'state', 'control.sock'))('status'), { deviceId: 'till-plain' });
  daemon.kill('SIGTERM');
  t.equal(await exited, 0);
  t.notOk(existsSync(path.join(dir, 'ran')), 'systemd-notify never ran');
  t.notOk(log.includes('systemd notification'), 'nothing about systemd in the log');
});
