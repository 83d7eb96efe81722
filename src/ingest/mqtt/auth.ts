/**
 * Who a device is, by the `auth` mode chosen in the config:
 * - `none`: anyone may connect; the identity (for ACLs) is the username it sends, unverified.
 * - `password`: the username and password must match an account (scrypt hash). An unknown user
 *   costs the same scrypt work as a wrong password, so timing does not reveal which accounts
 *   exist. Refused with CONNACK 4 (bad user name or password).
 * - `certificate`: the identity is the CN of the client certificate, verified against
 *   `mqtt.tls.ca` during the TLS handshake; a connection without one (plain TCP, WebSocket, or
 *   TLS without a certificate) is refused with CONNACK 5 (not authorized). The username sent is
 *   ignored.
 */
import { GatewayError } from '../../core/errors.js';
import { hashPassword, verifyPassword, type ScryptHash } from '../../core/password.js';
import type { MqttIngestConfig } from './config.js';
import { loadUsers } from './users.js';

export type AuthResult =
  | { ok: true; identity: string | undefined }
  | { ok: false; returnCode: 4 | 5; reason: string };

export interface Credentials {
  username: string | undefined;
  password: Buffer | undefined;
  /** CN of the verified client certificate, if any. */
  certCn: string | undefined;
}

export class Authenticator {
  readonly #config: Pick<MqttIngestConfig, 'auth' | 'users' | 'usersFile' | 'tls'>;
  #accounts = new Map<string, ScryptHash>();
  #decoy: string | undefined;

  constructor(config: Pick<MqttIngestConfig, 'auth' | 'users' | 'usersFile' | 'tls'>) {
    this.#config = config;
  }

  get mode(): MqttIngestConfig['auth'] {
    return this.#config.auth;
  }

  /** Reads and checks the accounts; returns how many there are. */
  async load(): Promise<number> {
    const config = this.#config;
    if (config.auth === 'certificate' && config.tls?.ca === undefined) {
      throw new GatewayError('CONFIG_INVALID', 'mqtt.auth is certificate, but mqtt.tls.ca (the CA that signs device certificates) is not set');
    }
    if (config.auth !== 'password') return 0;
    if (config.users.length === 0 && config.usersFile === undefined) {
      throw new GatewayError('CONFIG_INVALID', 'mqtt.auth is password, but there are no accounts: set mqtt.users or mqtt.usersFile');
    }
    this.#accounts = await loadUsers(config.users, config.usersFile);
    this.#decoy = await hashPassword('decoy: equalizes the time of unknown users');
    return this.#accounts.size;
  }

  async authenticate(credentials: Credentials): Promise<AuthResult> {
    switch (this.#config.auth) {
      case 'none':
        return { ok: true, identity: credentials.username };
      case 'certificate':
        if (credentials.certCn === undefined) {
          return { ok: false, returnCode: 5, reason: 'no verified client certificate (mqtt.auth: certificate)' };
        }
        return { ok: true, identity: credentials.certCn };
      case 'password': {
        const { username, password } = credentials;
        if (username === undefined || password === undefined) {
          return { ok: false, returnCode: 4, reason: 'no username or password' };
        }
        const account = this.#accounts.get(username);
        const matches = await verifyPassword(password, account ?? this.#decoy!);
        if (account === undefined) return { ok: false, returnCode: 4, reason: 'unknown user' };
        if (!matches) return { ok: false, returnCode: 4, reason: 'wrong password' };
        return { ok: true, identity: username };
      }
    }
  }
}
