/**
 * Per-device topic ACLs, as Mosquitto's `pattern` entries work.
 *
 * - No `acl` in the config: every device may publish and subscribe to every topic.
 * - With `acl`: a device may do what an entry for its identity (`user`: its username, or the CN of
 *   its certificate) or for everyone (`user: '*'`) allows; nothing else.
 * - In a filter, `%u` stands for the identity and `%c` for the client id. A device whose identity
 *   or client id is missing, or contains `+`, `#` or `/`, matches no entry that uses it (so
 *   `devices/%u/#` cannot be widened by a username such as `#` or `a/b`).
 * - Publish: the topic must match an allowed filter. Subscribe: the requested filter must be
 *   covered by an allowed filter, wildcards included (`sensor/+` is covered by `sensor/#` and by
 *   `sensor/+`, not by `sensor/a`).
 * - Topics starting with `$` are matched only by filters that start with `$` (MQTT 4.7.2).
 */
import { topicMatches } from '../../route/topic-filter.js';
import type { MqttAclEntry } from './config.js';

export interface AclSubject {
  /** Username (password or none auth) or certificate CN. */
  identity: string | undefined;
  clientId: string;
}

export type AclAction = 'publish' | 'subscribe';

export class Acl {
  readonly #entries: readonly MqttAclEntry[] | undefined;

  constructor(entries: readonly MqttAclEntry[] | undefined) {
    this.#entries = entries;
  }

  allows(subject: AclSubject, action: AclAction, topic: string): boolean {
    if (this.#entries === undefined) return true;
    for (const entry of this.#entries) {
      if (entry.user !== '*' && entry.user !== subject.identity) continue;
      for (const pattern of entry[action]) {
        const filter = substitute(pattern, subject);
        if (filter === undefined) continue;
        if (action === 'publish' ? topicMatches(filter, topic) : filterCovers(filter, topic)) return true;
      }
    }
    return false;
  }
}

const UNSAFE = /[+#/]/;

/** `pattern` with %u and %c replaced; undefined when a value it needs is missing or unsafe. */
export function substitute(pattern: string, subject: AclSubject): string | undefined {
  if (!pattern.includes('%')) return pattern;
  let failed = false;
  const result = pattern.replace(/%([uc])/g, (_all, which: string) => {
    const value = which === 'u' ? subject.identity : subject.clientId;
    if (value === undefined || value.length === 0 || UNSAFE.test(value)) failed = true;
    return value ?? '';
  });
  return failed ? undefined : result;
}

/** True when every topic that `requested` matches is also matched by `allowed`. */
export function filterCovers(allowed: string, requested: string): boolean {
  if (requested.startsWith('$') && (allowed.startsWith('+') || allowed.startsWith('#'))) return false;
  const a = allowed.split('/');
  const r = requested.split('/');
  for (let i = 0; i < a.length; i++) {
    const level = a[i];
    if (level === '#') return true;
    if (i >= r.length) return false;
    const want = r[i];
    if (want === '#') return false;
    if (level === '+') continue;
    if (want === '+' || level !== want) return false;
  }
  return a.length === r.length;
}
