// Child processes in tests start from one esbuild bundle instead of the TypeScript loader: a kill test
// spawns hundreds of them, and plain node starts in a tenth of the time.
import { build } from 'esbuild';
import { existsSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Packages with native bindings stay outside the bundle: they find their prebuilt `.node` files
 * relative to their own directory. The bundle reaches them through a `node_modules` link beside it.
 */
const NATIVE = ['serialport', '@serialport/*', 'node-hid', 'better-sqlite3'];

export async function bundle(entry: string, outDir: string): Promise<string> {
  const outfile = path.join(outDir, `${path.basename(entry, '.ts')}.mjs`);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: NATIVE,
    // serialport's packages are CommonJS: give the ESM bundle a require for them.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'warning',
  });
  const link = path.join(outDir, 'node_modules');
  if (!existsSync(link)) symlinkSync(path.join(root, 'node_modules'), link, 'dir');
  return outfile;
}
