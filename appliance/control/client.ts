// One control-socket call (◆ docs/control-protocol.md): send a JSON line, wait for the answer with the
// same id. Used by registerctl and the till UI's tests.
import { createConnection } from 'node:net';
import { RegisterError } from '../errors.js';

/** Longest answer line accepted: a Z report with thousands of lines is well under this. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** How long to wait for registerd's answer; a card payment waits on the terminal, hence generous. */
export const DEFAULT_CALL_TIMEOUT_MS = 120_000;

export interface ControlError {
  code: string;
  message: string;
  details?: unknown;
}

export type ControlAnswer = { ok: true; result: unknown } | { ok: false; error: ControlError };

export function callControl(
  socketPath: string,
  method: string,
  params: unknown,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<ControlAnswer> {
  const id = 1;
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    let buffered = '';
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      fn();
    };
    const timer = setTimeout(
      () =>
        finish(() => reject(new RegisterError('CONTROL_UNAVAILABLE', `no answer within ${timeoutMs} ms`))),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ id, method, params }) + '\n'));
    sock.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_RESPONSE_BYTES) {
        finish(() => reject(new RegisterError('CONTROL_BAD_RESPONSE', 'answer too long')));
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let msg: { id?: unknown; result?: unknown; error?: ControlError };
        try {
          msg = JSON.parse(line);
        } catch {
          finish(() => reject(new RegisterError('CONTROL_BAD_RESPONSE', `not JSON: ${line.slice(0, 80)}`)));
          return;
        }
        // Pushed events and other chatter are skipped; a refusal of the connection itself (BUSY,
        // LINE_TOO_LONG) carries no id and is ours too.
        if (msg.id !== id && !(msg.id === null && msg.error)) continue;
        finish(() => resolve(msg.error ? { ok: false, error: msg.error } : { ok: true, result: msg.result }));
        return;
      }
    });
    sock.on('error', (err) =>
      finish(() =>
        reject(
          new RegisterError('CONTROL_UNAVAILABLE', `cannot reach ${socketPath}: ${err.message}`, {}, err),
        ),
      ),
    );
    sock.on('close', () =>
      finish(() => reject(new RegisterError('CONTROL_UNAVAILABLE', 'registerd closed the connection'))),
    );
  });
}
