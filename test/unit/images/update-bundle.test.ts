// images/update-bundle.sh on a scratch root with small fake bundles: install, keep two releases,
// roll back, and refuse (changing nothing) a bundle that is damaged, for another machine, or a release
// whose registerctl cannot read the journal.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';

const script = path.resolve('images/update-bundle.sh');
const arch = process.arch === 'arm64' ? 'arm64' : 'x64';

/** A bundle as scripts/bundle.ts lays it out, as far as the script looks: manifest, registerctl, units. */
function fakeBundle(dir: string, release: string, opts: { arch?: string; canRead?: boolean } = {}): string {
  const app = path.join(dir, `app-${release}`);
  mkdirSync(path.join(app, 'bin'), { recursive: true });
  mkdirSync(path.join(app, 'systemd'), { recursive: true });
  const manifest = {
    name: 'register',
    version: release,
    release,
    arch: opts.arch ?? arch,
    platform: 'linux',
  };
  writeFileSync(path.join(app, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(path.join(app, 'bin', 'registerctl'), ctlStub(opts.canRead ?? true));
  chmodSync(path.join(app, 'bin', 'registerctl'), 0o755);
  writeFileSync(path.join(app, 'systemd', 'registerd.service'), `# registerd of ${release}\n`);
  const file = path.join(dir, `register-${release}-linux-${arch}.tar.gz`);
  const tar = spawnSync('tar', ['-czf', file, '-C', app, 'bin', 'manifest.json', 'systemd'], {
    encoding: 'utf8',
  });
  if (tar.status !== 0) throw new Error(tar.stderr);
  return file;
}

/** registerctl journal verify as a release that reads the journal, or one that predates its format. */
function ctlStub(canRead: boolean): string {
  return canRead
    ? '#!/bin/sh\necho \'{"ok":true}\'\n'
    : '#!/bin/sh\necho \'{"ok":false}\'\necho "registerctl: JOURNAL_UNKNOWN_VERSION: 00000001.seg has an unknown format version" >&2\nexit 1\n';
}

function scratchRoot(dir: string) {
  const root = path.join(dir, 'root');
  mkdirSync(path.join(root, 'opt/register/releases'), { recursive: true });
  mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
  const journal = path.join(dir, 'journal');
  mkdirSync(journal);
  const run = (...args: string[]) => {
    const r = spawnSync('sh', [script, '--root', root, '--journal', journal, ...args], { encoding: 'utf8' });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const link = (name: string) => {
    const p = path.join(root, 'opt/register', name);
    return existsSync(p) ? readlinkSync(p) : null;
  };
  const releases = () => readdirSync(path.join(root, 'opt/register/releases')).sort();
  const unit = () => readFileSync(path.join(root, 'etc/systemd/system/registerd.service'), 'utf8');
  return { root, run, link, releases, unit };
}

t.test('install switches current, keeps the previous release and only two', async (t) => {
  const dir = t.testdir();
  const r = scratchRoot(dir);
  let res = r.run('install', fakeBundle(dir, '0.1.0'));
  t.equal(res.code, 0, res.err);
  t.equal(r.link('current'), 'releases/0.1.0', 'a relative link, as install-register.sh makes it');
  t.equal(r.link('previous'), null);
  t.equal(r.unit(), '# registerd of 0.1.0\n');

  res = r.run('install', fakeBundle(dir, '0.2.0'));
  t.equal(res.code, 0, res.err);
  t.equal(r.link('current'), 'releases/0.2.0');
  t.equal(r.link('previous'), 'releases/0.1.0');
  t.equal(r.unit(), '# registerd of 0.2.0\n', 'the units come with the release');
  t.match(res.out, /reboot to run it/);

  res = r.run('install', fakeBundle(dir, '0.3.0'));
  t.equal(res.code, 0, res.err);
  t.same(r.releases(), ['0.2.0', '0.3.0'], 'only current and previous are kept');
  t.same(readdirSync(path.join(r.root, 'opt/register')).sort(), ['current', 'previous', 'releases']);

  res = r.run('install', path.join(dir, 'register-0.3.0-linux-' + arch + '.tar.gz'));
  t.equal(res.code, 0);
  t.match(res.out, /already current: nothing to do/);

  res = r.run('status');
  t.match(res.out, /current: {2}0\.3\.0\nprevious: 0\.2\.0/);
});

t.test('rollback swaps current and previous, with their units', async (t) => {
  const dir = t.testdir();
  const r = scratchRoot(dir);
  t.equal(r.run('rollback').code, 1, 'nothing to roll back to on a fresh root');
  r.run('install', fakeBundle(dir, '0.1.0'));
  r.run('install', fakeBundle(dir, '0.2.0'));
  const res = r.run('rollback');
  t.equal(res.code, 0, res.err);
  t.equal(r.link('current'), 'releases/0.1.0');
  t.equal(r.link('previous'), 'releases/0.2.0');
  t.equal(r.unit(), '# registerd of 0.1.0\n');
  t.equal(r.run('rollback').code, 0, 'and forward again');
  t.equal(r.link('current'), 'releases/0.2.0');
});

t.test('a release that cannot read the journal never becomes current', async (t) => {
  const dir = t.testdir();
  const r = scratchRoot(dir);
  r.run('install', fakeBundle(dir, '0.1.0'));
  r.run('install', fakeBundle(dir, '0.2.0'));
  let res = r.run('install', fakeBundle(dir, '0.0.9', { canRead: false }));
  t.equal(res.code, 1);
  t.match(res.err, /cannot read the journal.*JOURNAL_UNKNOWN_VERSION/);
  t.equal(r.link('current'), 'releases/0.2.0', 'unchanged');
  t.same(r.releases(), ['0.1.0', '0.2.0'], 'the refused release is not left behind');

  // The previous release predates the journal's format (the new one converted it): no rollback.
  writeFileSync(path.join(r.root, 'opt/register/releases/0.1.0/bin/registerctl'), ctlStub(false));
  res = r.run('rollback');
  t.equal(res.code, 1);
  t.match(res.err, /release 0\.1\.0 cannot read the journal/);
  t.equal(r.link('current'), 'releases/0.2.0');
  t.equal(r.unit(), '# registerd of 0.2.0\n');

  // Skipped only when asked (a workstation that cannot run the register's binaries), and said so.
  const skipped = spawnSync('sh', [script, '--root', r.root, '--journal', 'none', 'rollback'], {
    encoding: 'utf8',
  });
  t.equal(skipped.status, 0, skipped.stderr);
  t.match(skipped.stderr, /not checked/);
  t.equal(r.link('current'), 'releases/0.1.0');
});

t.test('a damaged bundle, or one for another machine, is refused and changes nothing', async (t) => {
  const dir = t.testdir();
  const r = scratchRoot(dir);
  r.run('install', fakeBundle(dir, '0.1.0'));
  const good = fakeBundle(dir, '0.2.0');
  writeFileSync(`${good}.sha256`, `${'0'.repeat(64)}  ${path.basename(good)}\n`);
  let res = r.run('install', good);
  t.equal(res.code, 1);
  t.match(res.err, /does not match .*sha256/);
  res = r.run('install', fakeBundle(dir, '0.3.0', { arch: arch === 'x64' ? 'arm64' : 'x64' }));
  t.equal(res.code, 1);
  t.match(res.err, /the bundle is for .*, the register runs/);
  writeFileSync(path.join(dir, 'junk.tar.gz'), 'not a tarball');
  t.equal(r.run('install', path.join(dir, 'junk.tar.gz')).code, 1);
  t.equal(r.link('current'), 'releases/0.1.0');
  t.same(r.releases(), ['0.1.0']);
  t.equal(r.run('frobnicate').code, 64);
  t.equal(r.run('install').code, 64);
});
