// The image recipes' parts that run without building an image: install-register.sh into a throwaway
// root (what both recipes install), add-data-partition.sh on a blank card image (read back with
// e2fsprogs, no mounts), and the two build scripts' checks and dry runs. Needs root (owners in the
// root file system), systemd (systemd-sysusers, systemctl --root), fdisk (sfdisk) and e2fsprogs.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const images = path.join(repo, 'images');

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A small stand-in for the app bundle: its manifest, the units and the launcher links. */
function fakeBundle(dir: string, arch: string): string {
  const content = path.join(dir, `content-${arch}`);
  mkdirSync(path.join(content, 'bin'), { recursive: true });
  writeFileSync(
    path.join(content, 'manifest.json'),
    `${JSON.stringify({ name: 'register-appliance', version: '0.1.0', release: '0.1.0-abcdef012345', commit: 'abcdef0123456789', arch, platform: 'linux' }, null, 2)}\n`,
  );
  sh('cp', ['-R', path.join(repo, 'systemd'), path.join(content, 'systemd')]);
  sh('cp', [path.join(images, 'bundle/launcher.sh'), path.join(content, 'bin/launcher')]);
  for (const cmd of ['registerd', 'registerctl', 'register-ui', 'register-provision', 'ledger'])
    symlinkSync('launcher', path.join(content, 'bin', cmd));
  const file = path.join(dir, `register-0.1.0-abcdef012345-linux-${arch}.tar.gz`);
  const r = sh('tar', ['-czf', file, '-C', content, 'manifest.json', 'systemd', 'bin']);
  if (r.status !== 0) throw new Error(r.out);
  return file;
}

/** The bare bones of a Debian root: what install-register.sh reads and writes. */
function fakeRoot(dir: string): string {
  const root = path.join(dir, 'root');
  for (const d of ['etc/systemd/system', 'usr/lib', 'usr/bin', 'etc/initramfs-tools'])
    mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nsystemd-journal:x:101:\n');
  writeFileSync(path.join(root, 'etc/fstab'), '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n');
  return root;
}

t.test('runs as root (owners in the image), with the tools', async (t) => {
  t.equal(process.getuid?.(), 0, 'image recipes and this test run as root');
  for (const tool of ['systemd-sysusers', 'systemctl', 'sfdisk', 'mke2fs', 'debugfs', 'dumpe2fs'])
    t.equal(sh('sh', ['-c', `command -v ${tool}`]).status, 0, tool);
});

t.test('install-register.sh puts the register into a root file system', async (t) => {
  const dir = t.testdir({});
  const bundle = fakeBundle(dir, 'arm64');
  const root = fakeRoot(dir);
  const r = sh(path.join(images, 'common/install-register.sh'), [root, bundle]);
  t.equal(r.status, 0, r.out);

  t.equal(readlinkSync(path.join(root, 'opt/register/current')), 'releases/0.1.0-abcdef012345');
  t.ok(existsSync(path.join(root, 'opt/register/releases/0.1.0-abcdef012345/manifest.json')));
  for (const cmd of ['registerd', 'registerctl', 'register-ui', 'register-provision'])
    t.equal(readlinkSync(path.join(root, 'opt/register/bin', cmd)), `../current/bin/${cmd}`);
  // The units run /opt/register/bin/register-provision: it reaches the launcher through the links.
  t.equal(
    sh('readlink', ['-f', path.join(root, 'opt/register/bin/register-provision')]).out.trim(),
    path.join(root, 'opt/register/releases/0.1.0-abcdef012345/bin/launcher'),
  );

  for (const unit of ['registerd.service', 'register-ui.service', 'register-provision.service'])
    t.ok(existsSync(path.join(root, 'etc/systemd/system', unit)), unit);
  const wants = path.join(root, 'etc/systemd/system/multi-user.target.wants');
  for (const unit of ['registerd.service', 'register-ui.service'])
    t.ok(lstatSync(path.join(wants, unit)).isSymbolicLink(), `${unit} enabled`);
  t.ok(existsSync(path.join(root, 'etc/udev/rules.d/90-pos.rules')));
  t.ok(existsSync(path.join(root, 'etc/modules-load.d/register.conf')));
  const passwd = readFileSync(path.join(root, 'etc/passwd'), 'utf8');
  const uid = Number(/^registerd:x:(\d+):/m.exec(passwd)?.[1]);
  t.ok(uid > 0, 'sysusers made registerd');
  t.match(passwd, /^register-ui:x:/m);

  const fstab = readFileSync(path.join(root, 'etc/fstab'), 'utf8');
  t.match(
    fstab,
    /^LABEL=register-data\s+\/data\s+ext4\s+noatime,nofail,x-systemd\.device-timeout=90s\s+0 2$/m,
  );
  t.match(
    fstab,
    /^\/data\/register\s+\/var\/lib\/register\s+none\s+bind,nofail,x-systemd\.requires-mounts-for=\/data\s/m,
  );
  t.match(
    fstab,
    /^\/data\/journal\s+\/var\/log\/journal\s+none\s+bind,nofail,x-systemd\.requires-mounts-for=\/data\s/m,
  );
  const data = statSync(path.join(root, 'data/register'));
  t.equal(data.uid, uid, 'data/register belongs to registerd');
  t.equal(data.mode & 0o7777, 0o750);
  const journal = statSync(path.join(root, 'data/journal'));
  t.equal(journal.gid, 101, 'data/journal: group systemd-journal');
  t.equal(journal.mode & 0o7777, 0o2755);

  const journald = readFileSync(path.join(root, 'etc/systemd/journald.conf.d/register.conf'), 'utf8');
  t.match(journald, /^Storage=persistent$/m);
  t.match(journald, /^SystemMaxUse=64M$/m);
  t.match(
    readFileSync(path.join(root, 'etc/overlayroot.local.conf'), 'utf8'),
    /^overlayroot="tmpfs:recurse=0"$/m,
  );
  t.match(
    readFileSync(path.join(root, 'etc/initramfs-tools/conf.d/register-busybox.conf'), 'utf8'),
    /^BUSYBOX=y$/m,
  );
  t.equal(readFileSync(path.join(root, 'etc/machine-id'), 'utf8'), '', 'an empty machine id');
  t.notOk(
    existsSync(path.join(root, 'etc/systemd/system/etc-machine\\x2did.mount')),
    'no bind mount of the machine id: provisioning puts it on the kernel command line',
  );
  t.equal(readlinkSync(path.join(root, 'etc/localtime')), '/var/lib/register/etc/localtime');
  t.match(
    readFileSync(path.join(root, 'etc/systemd/system/register-provision.service.d/image.conf'), 'utf8'),
    /--etc \/var\/lib\/register\/etc/,
  );

  const again = sh(path.join(images, 'common/install-register.sh'), [root, bundle]);
  t.equal(again.status, 0, `a second run: ${again.out}`);
  t.equal(readFileSync(path.join(root, 'etc/fstab'), 'utf8'), fstab, 'the same fstab');
});

t.test('install-register.sh refuses what it must not touch', async (t) => {
  const dir = t.testdir({});
  const root = fakeRoot(dir);
  const x64 = fakeBundle(dir, 'x64');
  const cases: [string[], RegExp, number][] = [
    [[], /usage/, 64],
    [['/', x64], /the build machine's own root/, 1],
    [['', x64], /the build machine's own root/, 1],
    [[path.join(dir, 'nothing'), x64], /is not a root file system/, 1],
    [[root, path.join(dir, 'missing.tar.gz')], /no bundle/, 1],
    [[root, x64], /the bundle is for x64/, 1],
  ];
  for (const [args, message, status] of cases) {
    const r = sh(path.join(images, 'common/install-register.sh'), args);
    t.equal(r.status, status, args.join(' '));
    t.match(r.out, message);
  }
  t.notOk(existsSync(path.join(root, 'opt')), 'nothing installed');
});

t.test('add-data-partition.sh appends the data partition without mounting', async (t) => {
  const dir = t.testdir({});
  const img = path.join(dir, 'card.img');
  sh('truncate', ['-s', '40M', img]);
  const made = spawnSync('sfdisk', ['-q', img], {
    input: 'label: dos\nstart=8192, size=16384, type=c\nstart=24576, size=32768, type=83\n',
  });
  t.equal(made.status, 0);
  const r = sh(path.join(images, 'pi-gen/add-data-partition.sh'), [img, '24M']);
  t.equal(r.status, 0, r.out);
  const dump = sh('sfdisk', ['--dump', img]).out;
  const third = /card\.img3 : start=\s*(\d+), size=\s*(\d+), type=83/.exec(dump);
  t.ok(third, dump);
  const start = Number(third![1]);
  t.equal(start % 8192, 0, '4 MiB aligned');
  t.equal(Number(third![2]), (24 * 1024 * 1024) / 512);
  t.equal(statSync(img).size, (start + Number(third![2])) * 512, 'the image grew to the end of it');
  const part = path.join(dir, 'p3');
  sh('dd', [`if=${img}`, `of=${part}`, 'bs=512', `skip=${start}`, 'status=none']);
  t.match(sh('dumpe2fs', ['-h', part]).out, /Filesystem volume name:\s+register-data/);
  const ls = sh('debugfs', ['-R', 'ls -l /', part]).out;
  t.match(ls, /40750 .* register/);
  t.match(ls, /42755 .* journal/);

  t.match(sh(path.join(images, 'pi-gen/add-data-partition.sh'), [img]).out, /already has 3 partitions/);
  t.match(sh(path.join(images, 'pi-gen/add-data-partition.sh'), [img, '2X']).out, /a number of MiB or GiB/);
});

t.test('the build scripts check their input and plan in a dry run', async (t) => {
  const dir = t.testdir({});
  const arm64 = fakeBundle(dir, 'arm64');
  const x64 = fakeBundle(dir, 'x64');
  const debian = path.join(images, 'debian/build.sh');
  t.equal(sh(debian, []).status, 64, 'no arguments');
  t.match(sh(debian, ['--bundle', x64, '--out', dir]).out, /the bundle is for x64/);
  t.match(sh(debian, ['--bundle', arm64, '--out', dir, '--root-size', 'big']).out, /size big/);
  t.match(sh(debian, ['--bundle', arm64, '--out', dir, '--hostname', 'Till_1']).out, /not a host name/);
  const plan = sh(debian, ['--bundle', arm64, '--out', dir, '--dry-run']);
  t.equal(plan.status, 0, plan.out);
  t.match(plan.out, `image:     ${dir}/register-0.1.0-abcdef012345-debian-bookworm-arm64.img`);
  t.match(plan.out, /mmdebstrap --architectures=arm64 .*raspi-firmware.*busybox,overlayroot/);

  const pigen = path.join(dir, 'pi-gen');
  mkdirSync(path.join(pigen, 'stage2'), { recursive: true });
  writeFileSync(path.join(pigen, 'build.sh'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const pi = path.join(images, 'pi-gen/build.sh');
  t.match(sh(pi, ['--bundle', x64, '--pi-gen', pigen, '--out', dir]).out, /not for arm64/);
  t.match(sh(pi, ['--bundle', arm64, '--pi-gen', dir, '--out', dir]).out, /not a pi-gen checkout/);
  const prepared = sh(pi, ['--bundle', arm64, '--pi-gen', pigen, '--out', dir, '--dry-run']);
  t.equal(prepared.status, 0, prepared.out);
  const stage = path.join(pigen, 'stage-register');
  for (const f of [
    'prerun.sh',
    'EXPORT_IMAGE',
    '00-packages/00-packages',
    '01-register/01-run.sh',
    '01-register/02-run-chroot.sh',
    '01-register/files/register-bundle.tar.gz',
    '01-register/files/common/install-register.sh',
  ])
    t.ok(existsSync(path.join(stage, f)), f);
  const config = readFileSync(path.join(pigen, 'config'), 'utf8');
  t.match(config, /^STAGE_LIST="stage0 stage1 stage2 stage-register"$/m);
  t.match(config, /^IMG_NAME=register-0\.1\.0-abcdef012345$/m);
  t.match(readFileSync(path.join(stage, '00-packages/00-packages'), 'utf8'), /^busybox$/m);
});
