/**
 * SIGHUP: what a running gateway takes over from its config file read again, and what it can only
 * name as needing a restart. The rules:
 *
 * - the keys in RELOADABLE (the log level) take effect at once;
 * - the upstream certificates and key are read again; the upstream reconnects if they changed,
 *   and `applied` names them only then (`unchanged` when they were the same, `failed` when they
 *   cannot be read or used: the running connection stays);
 * - every other key that differs from the running config needs a restart;
 * - so do new contents of the files the gateway reads only at start: the MQTT TLS listener's
 *   certificate, key and CA (`mqtt.tls files`) and, with `auth: password`, `mqtt.usersFile`
 *   (`mqtt.usersFile contents`). Their sha256 is taken at start and compared on every reload,
 *   also when the config file itself is invalid or unchanged; a file that cannot be read any more
 *   counts as changed;
 * - an invalid config file (`next` undefined) changes no key.
 *
 * Only key paths and labels leave this module, never a value (a password, a key).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { changedPaths } from './config-diff.js';
import type { LogLevel } from './log.js';

/** Config keys a running gateway takes over without a restart. */
export const RELOADABLE: ReadonlySet<string> = new Set(['log.level']);

export const MQTT_TLS_FILES = 'mqtt.tls files';
export const MQTT_USERS_FILE = 'mqtt.usersFile contents';
export const UPSTREAM_CERTIFICATES = 'upstream certificates';

/** The part of the gateway's config that reloading looks into (any object with more keys will do). */
export interface ReloadableConfig {
  log: { level: LogLevel };
  mqtt: {
    auth: string;
    tls?: { cert: string; key: string; ca?: string | undefined } | undefined;
    usersFile?: string | undefined;
  };
}

/** What a reload did. */
export interface ReloadResult {
  /** Taken over now: config keys, and `upstream certificates` when they had changed. */
  applied: string[];
  /** Read again and found as they were. */
  unchanged: string[];
  /** Could not be read again (or not used); the running ones stay. */
  failed: string[];
  /** Changed, but in effect only after a restart: key paths, `mqtt.tls files`, `mqtt.usersFile contents`. */
  restartNeeded: string[];
}

/** sha256 of the files read only at start, by the label a restart note names them with. */
export type Fingerprints = ReadonlyMap<string, string>;

/** The files the running gateway read once at start (and reads no more), fingerprinted. */
export async function fingerprintStartFiles(config: ReloadableConfig): Promise<Fingerprints> {
  const groups: Array<[string, string[]]> = [];
  const tls = config.mqtt.tls;
  if (tls !== undefined) groups.push([MQTT_TLS_FILES, [tls.cert, tls.key, ...(tls.ca === undefined ? [] : [tls.ca])]]);
  // The accounts are read only for auth: password.
  if (config.mqtt.auth === 'password' && config.mqtt.usersFile !== undefined) groups.push([MQTT_USERS_FILE, [config.mqtt.usersFile]]);
  const prints = new Map<string, string>();
  for (const [label, files] of groups) prints.set(label, await fingerprint(files));
  return prints;
}

async function fingerprint(files: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(`${file}\0`);
    try {
      const content = await readFile(file);
      hash.update(`${content.length}\0`).update(content);
    } catch (err) {
      // Compared with what was read at start, which could be read: a difference, so a restart note.
      hash.update(`unreadable ${(err as NodeJS.ErrnoException).code ?? 'error'}\0`);
    }
  }
  return hash.digest('hex');
}

export interface ReloadTargets<C extends ReloadableConfig> {
  /** The config running now. */
  running: C;
  /** The config file read again; undefined when it is not valid (or the gateway runs on the defaults). */
  next: C | undefined;
  /** Taken at start (fingerprintStartFiles). */
  fingerprints: Fingerprints;
  /** Sets the level of every logger of the gateway; undefined when its logger cannot. */
  setLogLevel: ((level: LogLevel) => void) | undefined;
  /** Re-reads the upstream certificates; undefined without an upstream. */
  upstream: { reload(): Promise<'changed' | 'unchanged' | 'unreadable'> } | undefined;
}

/** Applies what can be applied; returns what was done and the config running from now on. */
export async function reloadConfig<C extends ReloadableConfig>(targets: ReloadTargets<C>): Promise<{ result: ReloadResult; running: C }> {
  const result: ReloadResult = { applied: [], unchanged: [], failed: [], restartNeeded: [] };
  let running = targets.running;
  const next = targets.next;
  if (next !== undefined) {
    const changed = changedPaths(running, next);
    if (changed.includes('log.level') && targets.setLogLevel !== undefined) {
      targets.setLogLevel(next.log.level);
      running = { ...running, log: { ...running.log, level: next.log.level } };
      result.applied.push('log.level');
    }
    result.restartNeeded.push(...changed.filter((path) => !(RELOADABLE.has(path) && result.applied.includes(path))));
  }
  // The files of the running config (of the keys above, only log.level is ever taken over).
  const now = await fingerprintStartFiles(running);
  for (const [label, print] of targets.fingerprints) {
    if (now.get(label) !== print) result.restartNeeded.push(label);
  }
  if (targets.upstream !== undefined) {
    const found = await targets.upstream.reload();
    if (found === 'changed') result.applied.push(UPSTREAM_CERTIFICATES);
    else if (found === 'unchanged') result.unchanged.push(UPSTREAM_CERTIFICATES);
    else result.failed.push(UPSTREAM_CERTIFICATES);
  }
  return { result, running };
}
