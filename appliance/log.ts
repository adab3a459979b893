// Structured logging, one child per component. The shape matches pino's (`log.warn(fields, msg)`) so
// the daemon can hand in a pino logger; tests and tools use the JSON-lines one below or none.

export interface Logger {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** One JSON object per line on a stream (stderr by default), tagged with the component's name. */
export function jsonLogger(
  component: string,
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const emit = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    write(JSON.stringify({ level, time: Date.now(), component, msg, ...fields }) + '\n');
  return { info: emit('info'), warn: emit('warn'), error: emit('error') };
}
