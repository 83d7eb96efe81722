/**
 * The `uplink-upstream` config node: where readings go (AMQP 1.0 URL, SASL mechanism, TLS files),
 * how they are routed, and where they wait (the spool directory, by default under Node-RED's user
 * directory). It owns one UplinkRuntime (spool + upstream + forwarder + router), started when the
 * first node that uses it starts, shared by all of them, and stopped in `close`.
 *
 * The settings are checked by the gateway's own config loader (config/load.ts), so a Node-RED
 * upstream accepts exactly what `uplink.yaml` accepts, with the same `path: message` errors.
 * The SASL PLAIN user name and password, and the passphrase of an encrypted key, are Node-RED
 * credentials (kept in the credentials file, encrypted, never exported with the flow).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../config/issues.js';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { messageOf } from '../core/errors.js';
import { nodeLogger } from './node-logger.js';
import type { Node, NodeAPI, NodeDef } from './red-api.js';
import { UplinkRuntime } from './runtime.js';

export interface UpstreamDef extends NodeDef {
  url: string;
  sasl: 'external' | 'plain' | 'anonymous';
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  allowInsecure?: boolean;
  gatewayId?: string;
  /** Relative paths are under Node-RED's user directory. Empty: uplink/<config node id>. */
  spoolDir?: string;
  policy?: 'block' | 'drop-oldest';
  /** As in uplink.yaml; what the editor saves. */
  routes?: Array<{
    topic: string; address: string; delivery?: string; priority?: number | string; ttl?: number | string;
    properties?: Record<string, string | number | boolean> | string;
  }>;
}

export interface UpstreamCredentials {
  username: string;
  password: string;
  /** Of an encrypted private key. */
  passphrase: string;
}

/** What the other uplink nodes find through `RED.nodes.getNode(def.upstream)`. */
export interface UpstreamConfigNode extends Node<UpstreamCredentials> {
  /** Undefined when the settings are invalid; `failure` says why. */
  uplink?: UplinkRuntime;
  failure?: string;
  /** Starts the runtime once (the first node that uses it calls this); a failure is logged once. */
  use?: () => Promise<UplinkRuntime>;
}

/** The config the runtime runs on; throws a ConfigError listing every problem. */
export function upstreamConfig(def: UpstreamDef, credentials: Partial<UpstreamCredentials>, userDir: string): Config {
  const tls: Record<string, string> = Object.fromEntries((['ca', 'cert', 'key', 'servername'] as const)
    .filter((k) => typeof def[k] === 'string' && def[k].trim() !== '').map((k) => [k, def[k]!.trim()]));
  if (tls.key !== undefined && credentials.passphrase) tls.passphrase = credentials.passphrase;
  const plain = def.sasl === 'plain';
  const raw = {
    ...(def.gatewayId ? { gatewayId: def.gatewayId } : {}),
    dataDir: def.spoolDir ? def.spoolDir : join('uplink', def.id.replace(/[^A-Za-z0-9_-]/g, '_')),
    upstream: {
      url: def.url,
      sasl: def.sasl || 'external',
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
      ...(plain && credentials.username ? { username: credentials.username } : {}),
      ...(plain && credentials.password ? { password: credentials.password } : {}),
      ...(def.allowInsecure === true ? { allowInsecure: true } : {}),
    },
    ...(def.routes !== undefined && def.routes.length > 0 ? {
      routes: def.routes.map((r) => ({
        topic: r.topic, address: r.address,
        ...(r.delivery ? { delivery: r.delivery } : {}),
        ...(r.priority !== undefined && r.priority !== '' ? { priority: Number(r.priority) } : {}),
        // Seconds, or text such as 7d, as in uplink.yaml.
        ...(r.ttl !== undefined && r.ttl !== '' ? { ttl: /^\d+(\.\d+)?$/.test(String(r.ttl)) ? Number(r.ttl) : r.ttl } : {}),
        // Anything but an object (text that was not JSON in the editor) fails in the loader, with its path.
        ...(r.properties !== undefined && r.properties !== '' ? { properties: r.properties } : {}),
      })),
    } : {}),
    ...(def.policy ? { spool: { policy: def.policy } } : {}),
  };
  // JSON is YAML: the gateway's loader reads it as it reads uplink.yaml.
  return parseConfig(JSON.stringify(raw), { source: `uplink-upstream ${def.name || def.id}`, baseDir: userDir });
}

export default function register(RED: NodeAPI): void {
  function UplinkUpstreamNode(this: UpstreamConfigNode, def: UpstreamDef): void {
    RED.nodes.createNode(this, def);
    const log = nodeLogger(this);
    try {
      const config = upstreamConfig(def, this.credentials ?? {}, RED.settings.userDir ?? join(homedir(), '.node-red'));
      // One connection per config node: brokers may refuse a container id that is connected already.
      const uplink = new UplinkRuntime({ config, log, containerId: `${config.gatewayId}:${def.id}` });
      this.uplink = uplink;
      let started: Promise<UplinkRuntime> | undefined;
      this.use = () => {
        started ??= uplink.start().then(() => uplink, (err: unknown) => {
          this.error(`cannot start: ${messageOf(err)}`);
          throw err;
        });
        return started;
      };
    } catch (err) {
      this.failure = err instanceof ConfigError ? err.issues.map((i) => `${i.path}: ${i.message}`).join('; ') : messageOf(err);
      this.error(`invalid settings: ${this.failure}`);
    }
    this.on('close', (_removed, done) => {
      const uplink = this.uplink;
      if (uplink === undefined) {
        done();
        return;
      }
      uplink.stop().catch((err: unknown) => this.error(`stopping: ${messageOf(err)}`)).finally(done);
    });
  }
  RED.nodes.registerType('uplink-upstream', UplinkUpstreamNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' }, passphrase: { type: 'password' } },
  });
}
