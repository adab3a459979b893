// images/common/remove-tree.sh: a build's scratch directory that still holds bind mounts of the
// machine's own directories (as an interrupted mmdebstrap leaves /dev/shm) is removed without
// deleting anything behind those mounts. Needs root for mount(8), as the image build itself does.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

const script = path.resolve('images/common/remove-tree.sh');

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function mountedUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((target) => target === dir || target.startsWith(`${dir}/`));
}

t.test('bind mounts inside are unmounted, what is behind them survives', (t) => {
  const dir = t.testdir();
  const outside = path.join(dir, 'machine-shm');
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'PostgreSQL.1234'), 'segment');
  const work = path.join(dir, 'work');
  t.teardown(() => run(script, [work]));
  const shm = path.join(work, 'rootfs/dev/shm');
  const pts = path.join(work, 'rootfs/dev/pts');
  mkdirSync(shm, { recursive: true });
  mkdirSync(pts, { recursive: true });
  writeFileSync(path.join(work, 'rootfs/etc-file'), 'x');
  const bound = run('mount', ['--bind', outside, shm]);
  t.equal(bound.status, 0, `mount --bind needs root: ${bound.out}`);
  // A second mount stacked deeper than the first, and one on top of the other.
  t.equal(run('mount', ['-t', 'tmpfs', 'none', pts]).status, 0, 'tmpfs mounted');
  t.equal(run('mount', ['--bind', outside, shm]).status, 0, 'stacked bind mount');
  t.equal(mountedUnder(work).length, 3, 'three mounts under the scratch directory');

  const r = run(script, [work]);
  t.equal(r.status, 0, r.out);
  t.notOk(existsSync(work), 'scratch directory removed');
  t.same(mountedUnder(work), [], 'nothing left mounted');
  t.equal(
    readFileSync(path.join(outside, 'PostgreSQL.1234'), 'utf8'),
    'segment',
    'the machine file survives',
  );
  t.end();
});

t.test('a name with a space; a missing directory is fine; / and no argument are refused', (t) => {
  const dir = t.testdir();
  const outside = path.join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'keep'), 'k');
  const work = path.join(dir, 'scratch dir');
  t.teardown(() => run(script, [work]));
  const target = path.join(work, 'mnt point');
  mkdirSync(target, { recursive: true });
  t.equal(run('mount', ['--bind', outside, target]).status, 0, 'bind mount');
  t.equal(run(script, [work]).status, 0, 'removed');
  t.notOk(existsSync(work));
  t.ok(existsSync(path.join(outside, 'keep')), 'the file behind the mount survives');

  t.equal(run(script, [path.join(dir, 'never-made')]).status, 0, 'nothing to remove');
  const root = run(script, ['/']);
  t.equal(root.status, 1);
  t.match(root.out, /refusing to remove \//);
  t.equal(run(script, []).status, 64, 'usage');
  t.end();
});
