// Waiting on something another process or an event loop turn will make true: poll with a deadline,
// never a blind sleep. The one helper the integration, bridge and sync suites share.

/** Poll `probe` until it returns something other than undefined/false; fail naming `what` at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError ? ` (last error: ${String((lastError as Error)?.message ?? lastError)})` : '';
      throw new Error(`waited ${timeoutMs} ms for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}
