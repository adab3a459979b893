// Which processes a test left behind: every suite that starts daemons, simulators or socat pairs under
// a temporary directory checks at the end that none of them outlives it.
import { readdirSync, readFileSync } from 'node:fs';

/** Pids of live processes (zombies aside) whose command line mentions `needle` (a temporary directory). */
export function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (/^\S+ \([^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) continue;
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle) && Number(pid) !== process.pid)
        pids.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}
