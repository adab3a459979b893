// A throwaway Mosquitto as docs/mosquitto/ configures one for the field: TLS only, a client
// certificate required, its CN the MQTT user, the documented ACL. A CA and certificates are made
// with openssl in a temporary directory; the broker listens on a free port and logs on stderr.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import * as path from 'node:path';
import type { IClientOptions } from 'mqtt';
import type { Test } from 'tap';

const MOSQUITTO = '/usr/sbin/mosquitto';
const DOCS = path.join(import.meta.dirname, '../../docs/mosquitto');

/** Extensions of a register's (or the ledger's) client certificate, as docs/security.md issues them. */
export const CLIENT_EXTENSIONS = [
  'basicConstraints=CA:FALSE',
  'keyUsage=digitalSignature',
  'extendedKeyUsage=clientAuth',
];

export interface TlsMosquitto {
  /** mqtts://127.0.0.1:PORT */
  url: string;
  proc: ChildProcess;
  /** Everything mosquitto logged, a line each. */
  log: string[];
  /** A path in the broker's temporary directory (ca.crt, ca.key, NAME.crt, NAME.key…). */
  file(name: string): string;
  openssl(...args: string[]): void;
  /** A P-256 key and a certificate for `cn` signed by the test CA, as NAME.key and NAME.crt. */
  issue(name: string, cn: string, extensions?: string[]): void;
  /** TLS options for an MQTT client with NAME's certificate. */
  tlsAs(name: string): IClientOptions;
}

/**
 * docs/mosquitto/mosquitto.conf for a throwaway broker: our port and temp paths, no persistence, logs
 * on stderr; every security setting as documented.
 */
function testConfig(dir: string, port: number): string {
  const file = (name: string) => path.join(dir, name);
  const out: string[] = [];
  for (const line of readFileSync(path.join(DOCS, 'mosquitto.conf'), 'utf8').split('\n')) {
    const [key] = line.split(/\s+/, 1);
    const replaced: Record<string, string | null> = {
      acl_file: `acl_file ${file('acl')}`,
      persistence: 'persistence false',
      persistence_location: null,
      autosave_interval: null,
      log_dest: 'log_dest stderr',
      listener: `listener ${port} 127.0.0.1`,
      cafile: `cafile ${file('ca.crt')}`,
      certfile: `certfile ${file('server.crt')}`,
      keyfile: `keyfile ${file('server.key')}`,
    };
    if (key && key in replaced) {
      const r = replaced[key];
      if (r !== null) out.push(r!);
    } else out.push(line);
  }
  // Run as us (as root it would switch to the mosquitto user, who cannot read our temp dir).
  out.push(`user ${userInfo().username}`, 'log_type all');
  return out.join('\n') + '\n';
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Starts the broker with a fresh CA and a server certificate for 127.0.0.1; stopped at teardown. */
export async function startTlsMosquitto(t: Test): Promise<TlsMosquitto> {
  const missing = [MOSQUITTO, '/usr/bin/openssl'].filter((f) => !existsSync(f));
  if (missing.length) throw new Error(`needs ${missing.join(' and ')}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'mosquitto-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) =>
    void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const issue = (name: string, cn: string, extensions = CLIENT_EXTENSIONS) => {
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    openssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
    writeFileSync(file(`${name}.ext`), extensions.join('\n') + '\n');
    openssl(
      'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
    ); // prettier-ignore
  };
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  openssl(
    'req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/CN=Test Ledger CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', 'ca.crt',
  ); // prettier-ignore
  issue('server', '127.0.0.1', [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1',
  ]);

  const port = await freePort();
  writeFileSync(file('acl'), readFileSync(path.join(DOCS, 'acl')));
  writeFileSync(file('mosquitto.conf'), testConfig(dir, port));
  const proc = spawn(MOSQUITTO, ['-c', file('mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        log.push(line);
        if (/running$/.test(line)) resolve();
      }
    };
    proc.stdout!.on('data', onLine);
    proc.stderr!.on('data', onLine);
    proc.once('exit', (code) => reject(new Error(`mosquitto exited ${code}: ${log.join('\n')}`)));
  });
  t.teardown(async () => {
    if (proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    await exited;
  });
  return {
    url: `mqtts://127.0.0.1:${port}`,
    proc,
    log,
    file,
    openssl,
    issue,
    tlsAs: (name) => ({
      ca: readFileSync(file('ca.crt')),
      cert: readFileSync(file(`${name}.crt`)),
      key: readFileSync(file(`${name}.key`)),
    }),
  };
}
