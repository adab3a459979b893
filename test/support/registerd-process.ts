// registerd as a real child process for integration tests: started from a bundle, ready when it logs
// so, killed with SIGKILL like a power cut, called through its control socket.
import { spawn, type ChildProcess } from 'node:child_process';
import { callControl } from '../../appliance/control/client.js';

export interface DaemonProcess {
  proc: ChildProcess;
  exited: Promise<number | null>;
  /** Everything it logged so far (JSON lines). */
  log(): string;
}

export function startDaemon(bin: string, config: string): Promise<DaemonProcess> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [bin, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
    let log = '';
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      log = (log + chunk).slice(-1_000_000);
      if (log.includes('"msg":"ready"')) resolve({ proc, exited, log: () => log });
    });
    proc.on('exit', (c) => reject(new Error(`registerd exited (${c}) before ready:\n${log}`)));
  });
}

export async function kill9(d: DaemonProcess): Promise<void> {
  d.proc.kill('SIGKILL');
  await d.exited;
}

/** One control-socket call; a refusal becomes a thrown error carrying its code. */
export function controlCaller(socket: string, timeoutMs = 10_000) {
  return async (method: string, params: unknown = {}): Promise<Record<string, unknown>> => {
    const answer = await callControl(socket, method, params, timeoutMs);
    if (!answer.ok) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
    return answer.result as Record<string, unknown>;
  };
}
