import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of one certificate and its private key (PEM). */
export interface CertPair {
  cert: string;
  key: string;
}

/**
 * Throwaway PKI for tests, made with the openssl CLI into a fresh temporary directory:
 * - `ca`: the trusted CA (`ca.cert` is what servers and clients trust);
 * - `server`: CN=localhost, SAN DNS:localhost and IP:127.0.0.1, signed by `ca`;
 * - `client`: CN=`clientCn` (a user the test broker knows), signed by `ca`;
 * - `unknownClient`: CN=`unknownCn` (no such broker user), signed by `ca`;
 * - `foreignCa` and `foreignClient`: a second, untrusted CA and a client cert with CN=`clientCn` from it.
 */
export interface TestPki {
  dir: string;
  ca: CertPair;
  server: CertPair;
  client: CertPair;
  unknownClient: CertPair;
  foreignCa: CertPair;
  foreignClient: CertPair;
  clientCn: string;
  unknownCn: string;
}

export interface PkiOptions {
  clientCn?: string;
  unknownCn?: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

async function makeCa(dir: string, name: string, cn: string): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', pair.key, '-out', pair.cert, '-days', '30', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return pair;
}

async function makeLeaf(dir: string, name: string, cn: string, ca: CertPair, ext: string): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const extFile = join(dir, `${name}.ext`);
  await writeFile(extFile, ext);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', pair.key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  // An explicit random serial: -CAcreateserial shares one .srl file and races when leaves are signed in parallel.
  const serial = `0x${randomBytes(16).toString('hex')}`;
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial,
    '-out', pair.cert, '-days', '30', '-extfile', extFile], dir);
  return pair;
}

const SERVER_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
  'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n';
const CLIENT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
  'extendedKeyUsage=clientAuth\n';

export async function makeTestPki(options: PkiOptions = {}): Promise<TestPki> {
  const clientCn = options.clientCn ?? 'line1-gw';
  const unknownCn = options.unknownCn ?? 'intruder';
  const dir = await mkdtemp(join(tmpdir(), 'uplink-pki-'));
  const ca = await makeCa(dir, 'ca', 'uplink test CA');
  const foreignCa = await makeCa(dir, 'foreign-ca', 'foreign test CA');
  const [server, client, unknownClient, foreignClient] = await Promise.all([
    makeLeaf(dir, 'server', 'localhost', ca, SERVER_EXT),
    makeLeaf(dir, 'client', clientCn, ca, CLIENT_EXT),
    makeLeaf(dir, 'unknown-client', unknownCn, ca, CLIENT_EXT),
    makeLeaf(dir, 'foreign-client', clientCn, foreignCa, CLIENT_EXT),
  ]);
  return { dir, ca, server, client, unknownClient, foreignCa, foreignClient, clientCn, unknownCn };
}
