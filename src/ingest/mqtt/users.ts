/**
 * Device accounts for `auth: password`: `mqtt.users` from the config plus the lines of
 * `mqtt.usersFile` ("username:hash", as `uplink passwd --user NAME` prints; blank lines and lines
 * starting with # are skipped). Every hash is checked when the accounts are loaded, so a bad one
 * stops start() with its place named instead of failing logins later.
 */
import { readFile } from 'node:fs/promises';
import { GatewayError } from '../../core/errors.js';
import { parsePasswordHash, type ScryptHash } from '../../core/password.js';
import type { MqttUser } from './config.js';

export async function loadUsers(users: readonly MqttUser[], usersFile: string | undefined): Promise<Map<string, ScryptHash>> {
  const accounts = new Map<string, ScryptHash>();
  const add = (where: string, username: string, hash: string): void => {
    if (accounts.has(username)) throw new GatewayError('CONFIG_INVALID', `${where}: user '${username}' is defined twice`);
    const parsed = parsePasswordHash(hash);
    if (typeof parsed === 'string') throw new GatewayError('CONFIG_INVALID', `${where}: the password of '${username}' ${parsed}`);
    accounts.set(username, parsed);
  };
  users.forEach((user, i) => add(`mqtt.users.${i}`, user.username, user.password));
  if (usersFile !== undefined) {
    let text: string;
    try {
      text = await readFile(usersFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new GatewayError('CONFIG_UNREADABLE', `mqtt.usersFile: ${usersFile} cannot be read (${code})`, { cause: err });
    }
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `mqtt.usersFile ${usersFile} line ${i + 1}`;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new GatewayError('CONFIG_INVALID', `${where}: expected "username:hash"`);
      add(where, line.slice(0, colon), line.slice(colon + 1));
    });
  }
  return accounts;
}
