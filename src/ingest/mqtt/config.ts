/**
 * The `mqtt:` section of the config as this module reads it: the output of `MqttSchema`
 * (config/schema.ts), declared here structurally because ingest may not import config. The test
 * harness (test/ingest/mqtt/helpers.ts, `mqttConfig`) assigns the schema's output to this type,
 * so the type check fails if the two drift apart.
 */
export interface MqttUser {
  username: string;
  /** `$scrypt$...` from `uplink passwd`. */
  password: string;
}

export interface MqttAclEntry {
  /** Username or certificate CN; `*` for everyone. */
  user: string;
  /** Topic filters; `%u` = username (or CN), `%c` = client id. */
  publish: string[];
  subscribe: string[];
}

export interface MqttListenerAddress {
  host?: string | undefined;
  port: number;
}

export interface MqttIngestConfig {
  host: string;
  /** 0 picks a free port (tests); the schema allows 1-65535. */
  port: number;
  tls?: (MqttListenerAddress & { cert: string; key: string; ca?: string | undefined }) | undefined;
  websocket?: MqttListenerAddress | undefined;
  auth: 'none' | 'password' | 'certificate';
  users: MqttUser[];
  usersFile?: string | undefined;
  /** Unset: everyone may do everything. Set: what no entry allows is denied. */
  acl?: MqttAclEntry[] | undefined;
  maxPayload: number;
  maxTopicLength: number;
  maxTopicLevels: number;
  maxConnections: number;
  maxInFlight: number;
  unrouted: 'drop' | 'refuse';
}
