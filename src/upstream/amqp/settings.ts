/**
 * The upstream section of the config, as the gateway and the Node-RED runtime both hold it, turned
 * into AmqpUpstream options in one place. Described by shape, since upstream/ may not import
 * config/ (DESIGN.md).
 */
import type { Logger } from '../../core/logger.js';
import type { AmqpUpstreamOptions } from './amqp-upstream.js';
import type { TlsPaths } from './tls-files.js';

export interface UpstreamSettings {
  url: string | string[];
  sasl: AmqpUpstreamOptions['sasl'];
  tls?: (TlsPaths & { servername?: string | undefined }) | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** ms; AmqpUpstream's defaults (UPSTREAM_DEFAULTS) when unset, as for Node-RED. */
  idleTimeout?: number | undefined;
  maxLinks?: number | undefined;
  /** ms. */
  linkIdleTimeout?: number | undefined;
}

export function upstreamOptions(settings: UpstreamSettings, base: { gatewayId: string; log: Logger } & Partial<AmqpUpstreamOptions>): AmqpUpstreamOptions {
  const { url, sasl, tls, username, password, idleTimeout, maxLinks, linkIdleTimeout } = settings;
  return {
    ...base,
    urls: Array.isArray(url) ? url : [url],
    sasl,
    ...(tls === undefined ? {} : { tls: definedOnly(tls) }),
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(idleTimeout === undefined ? {} : { idleTimeoutMs: idleTimeout }),
    ...(maxLinks === undefined ? {} : { maxLinks }),
    ...(linkIdleTimeout === undefined ? {} : { linkIdleTimeoutMs: linkIdleTimeout }),
  };
}

/** exactOptionalPropertyTypes: the schema's `key?: string | undefined` to `key?: string`. */
function definedOnly<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
