/**
 * Password hashes for MQTT device accounts: scrypt (node:crypto), stored as
 *
 *   $scrypt$N=16384,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>
 *
 * The cost parameters travel with each hash, so a hash made with other parameters (or by a later
 * version with higher defaults) still verifies. Only hashes are stored; `uplink passwd` makes them.
 *
 * Error rules: `hashPassword` and `verifyPassword` never log or echo the password. A malformed
 * hash is a config problem found when the users are loaded (`parsePasswordHash` tells why), not a
 * failed login: `verifyPassword` throws a GatewayError(CONFIG_INVALID) for one.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { GatewayError } from './errors.js';

/** scrypt cost: 16 MiB and ~50 ms per check on a Raspberry Pi 4 class CPU. */
export const DEFAULT_SCRYPT = { N: 16384, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Refuse parameters that would make one login take gigabytes (a typo in a hand-edited hash). */
const MAX_MEMORY = 512 * 1024 * 1024;

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function scrypt(password: Buffer, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const toBase64 = (buf: Buffer): string => buf.toString('base64').replace(/=+$/, '');

function memoryFor(N: number, r: number): number {
  return 128 * N * r + 1024 * 1024;
}

/** A new hash of `password` with a random salt. */
export async function hashPassword(password: string | Buffer, params: { N: number; r: number; p: number } = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scrypt(Buffer.from(password), salt, KEY_BYTES, { ...params, maxmem: memoryFor(params.N, params.r) });
  return `$scrypt$N=${params.N},r=${params.r},p=${params.p}$${toBase64(salt)}$${toBase64(key)}`;
}

/** The parts of a hash, or a description of what is wrong with it. */
export function parsePasswordHash(text: string): ScryptHash | string {
  const match = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (match === null) return "is not a hash made by 'uplink passwd' ($scrypt$N=..,r=..,p=..$salt$key)";
  const [N, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (N < 2 || (N & (N - 1)) !== 0) return 'has an scrypt N that is not a power of two';
  if (r < 1 || p < 1 || p > 16) return 'has scrypt r or p out of range';
  if (memoryFor(N, r) > MAX_MEMORY) return 'has scrypt parameters that need more than 512 MiB';
  const salt = Buffer.from(match[4]!, 'base64');
  const key = Buffer.from(match[5]!, 'base64');
  if (salt.length < 8) return 'has a salt shorter than 8 bytes';
  if (key.length < 16) return 'has a key shorter than 16 bytes';
  return { N, r, p, salt, key };
}

/** True when `password` matches `hash` (compared in constant time). */
export async function verifyPassword(password: string | Buffer, hash: string | ScryptHash): Promise<boolean> {
  const parsed = typeof hash === 'string' ? parsePasswordHash(hash) : hash;
  if (typeof parsed === 'string') throw new GatewayError('CONFIG_INVALID', `password hash ${parsed}`);
  const key = await scrypt(Buffer.from(password), parsed.salt, parsed.key.length,
    { N: parsed.N, r: parsed.r, p: parsed.p, maxmem: memoryFor(parsed.N, parsed.r) });
  return timingSafeEqual(key, parsed.key);
}
