// Child processes in tests start from one esbuild bundle instead of the TypeScript loader: a kill test
// spawns hundreds of them, and plain node starts in a tenth of the time.
import { build } from 'esbuild';
import * as path from 'node:path';

export async function bundle(entry: string, outDir: string): Promise<string> {
  const outfile = path.join(outDir, `${path.basename(entry, '.ts')}.mjs`);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
  return outfile;
}
