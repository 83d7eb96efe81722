/**
 * Checks the schema cannot express: referenced files exist and are readable, settings that only
 * make sense together (SASL EXTERNAL needs TLS and a client certificate, PLAIN refuses clear text
 * unless allowed), and one serial device for one Modbus bus or serial port. A file's contents are
 * never read here and never echoed in a message.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ConfigIssue, PathSegment } from './issues.js';
import type { Config } from './schema.js';

type Issue = Omit<ConfigIssue, 'path'> & { path: PathSegment[] };

/** Every place in the config that names a file. */
export const FILE_PATHS = [
  ['upstream', 'tls', 'ca'], ['upstream', 'tls', 'cert'], ['upstream', 'tls', 'key'],
  ['mqtt', 'tls', 'ca'], ['mqtt', 'tls', 'cert'], ['mqtt', 'tls', 'key'], ['mqtt', 'usersFile'],
] as const;

/** The value at `path` in a parsed YAML tree, if it is there. */
export function valueAt(tree: unknown, path: readonly string[]): unknown {
  let node = tree;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** Problems with the files named in the raw (not yet validated) config, relative to `baseDir`. */
export function checkFiles(raw: unknown, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  for (const path of FILE_PATHS) {
    const value = valueAt(raw, path);
    if (typeof value !== 'string' || value === '') continue;
    const problem = fileProblem(value, baseDir);
    if (problem !== undefined) issues.push({ path: [...path], message: problem });
  }
  return issues;
}

function fileProblem(value: string, baseDir: string): string | undefined {
  // A pasted PEM would otherwise be echoed into the error, and with it a private key.
  if (value.includes('\n') || value.includes('-----BEGIN')) return 'must be a file path, not the PEM contents';
  const path = resolve(baseDir, value);
  try {
    if (!statSync(path).isFile()) return `is not a file: ${path}`;
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `file not found: ${path}`;
    if (code === 'EACCES') return `file not readable (permission denied): ${path}`;
    return `cannot read file ${path} (${code ?? 'unknown error'})`;
  }
}

/** Problems across fields of a config that passed the schema. */
export function checkCombinations(config: Config): Issue[] {
  const issues: Issue[] = [];
  const upstream = config.upstream;
  if (upstream !== undefined) {
    const list = Array.isArray(upstream.url) ? upstream.url : [upstream.url];
    const urls = list.map(parseUpstreamUrl);
    urls.forEach((url, i) => {
      if (typeof url === 'string') issues.push({ path: Array.isArray(upstream.url) ? ['upstream', 'url', i] : ['upstream', 'url'], message: url });
    });
    const parsed = urls.filter((u): u is URL => typeof u !== 'string');
    if (parsed.length > 0 && new Set(parsed.map((u) => u.protocol)).size > 1) {
      issues.push({ path: ['upstream', 'url'], message: 'mixes amqp:// and amqps://; use one scheme for all' });
    }
    const url = parsed[0];
    if (url !== undefined && parsed.length === urls.length) {
      const secure = url.protocol === 'amqps:';
      if (upstream.tls !== undefined && !secure) {
        issues.push({ path: ['upstream', 'tls'], message: 'is only used with an amqps:// url' });
      }
      if ((upstream.tls?.cert === undefined) !== (upstream.tls?.key === undefined)) {
        const missing = upstream.tls?.cert === undefined ? 'cert' : 'key';
        issues.push({ path: ['upstream', 'tls', missing], message: 'is required when tls.cert or tls.key is set (they go together)' });
      }
      if (upstream.sasl === 'external') {
        if (!secure) {
          issues.push({ path: ['upstream', 'sasl'], message: 'external needs an amqps:// url (the TLS client certificate is the identity)' });
        } else if (upstream.tls?.cert === undefined && upstream.tls?.key === undefined) {
          issues.push({ path: ['upstream', 'tls'], message: 'cert and key are required for sasl: external' });
        }
      }
      if (upstream.sasl === 'plain') {
        if (upstream.username === undefined) issues.push({ path: ['upstream', 'username'], message: 'is required for sasl: plain' });
        if (upstream.password === undefined) issues.push({ path: ['upstream', 'password'], message: 'is required for sasl: plain' });
        if (!secure && !upstream.allowInsecure) {
          issues.push({ path: ['upstream', 'sasl'], message: 'plain over amqp:// sends the password in clear text; use amqps:// or set upstream.allowInsecure: true' });
        }
      } else {
        for (const key of ['username', 'password'] as const) {
          if (upstream[key] !== undefined) issues.push({ path: ['upstream', key], message: `is only used with sasl: plain (sasl is ${upstream.sasl})` });
        }
      }
    }
  }
  const modes = new Map<string, string>();
  config.routes.forEach((route, i) => {
    const mode = modes.get(route.address);
    if (mode !== undefined && mode !== route.delivery) {
      issues.push({ path: ['routes', i, 'delivery'], message: `differs from an earlier route to ${route.address}; one address has one delivery mode` });
    }
    modes.set(route.address, route.delivery);
  });
  const mqtt = config.mqtt;
  if (mqtt.auth === 'password' && mqtt.users.length === 0 && mqtt.usersFile === undefined) {
    issues.push({ path: ['mqtt', 'auth'], message: 'password needs mqtt.users or mqtt.usersFile' });
  }
  if (mqtt.auth === 'certificate' && mqtt.tls?.ca === undefined) {
    issues.push({ path: ['mqtt', 'auth'], message: 'certificate needs an mqtt.tls listener with tls.ca (the CA of the device certificates)' });
  }
  if (config.downlink !== undefined && config.upstream === undefined) {
    issues.push({ path: ['downlink'], message: 'needs an upstream: commands are received over the upstream connection' });
  }
  if (config.http.port === config.mqtt.port && sameInterface(config.http.host, config.mqtt.host)) {
    issues.push({ path: ['http', 'port'], message: `is already taken by mqtt.port (${config.mqtt.port})` });
  }
  issues.push(...sharedSerialDevices(config));
  return issues;
}

/** A serial device opened by two (Modbus RTU buses, serial ports): each would take the other's bytes. */
function sharedSerialDevices(config: Config): Issue[] {
  const issues: Issue[] = [];
  const users = new Map<string, string>();
  const use = (path: string, where: PathSegment[], who: string): void => {
    const device = deviceOf(path);
    const first = users.get(device);
    if (first === undefined) users.set(device, who);
    else issues.push({ path: where, message: `is the serial device of ${first} already (each would take the other's bytes)` });
  };
  config.modbus.buses.forEach((bus, i) => {
    if (bus.rtu !== undefined) use(bus.rtu.path, ['modbus', 'buses', i, 'rtu', 'path'], `modbus bus ${bus.name}`);
  });
  config.serial.forEach((port, i) => use(port.path, ['serial', i, 'path'], `serial port ${port.name}`));
  return issues;
}

/** The device a path names: the same through another link (/dev/serial/by-id/…) when it exists now. */
function deviceOf(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync(absolute);
  } catch {
    return absolute;
  }
}

function sameInterface(a: string, b: string): boolean {
  const any = new Set(['0.0.0.0', '::']);
  return a === b || any.has(a) || any.has(b);
}

/** The parsed URL, or what is wrong with it. */
export function parseUpstreamUrl(text: string): URL | string {
  const portText = /^[a-z]+:\/\/(?:\[[^\]]*\]|[^/:?#]*)(?::(\d*))?/i.exec(text)?.[1];
  if (portText !== undefined && portText !== '' && (Number(portText) < 1 || Number(portText) > 65535)) {
    return 'port must be from 1 to 65535';
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'is not a valid URL';
  }
  if (url.hostname === '') return 'must name a host';
  if (url.username !== '' || url.password !== '') {
    return 'must not contain credentials (they would show in logs); use upstream.username and upstream.password';
  }
  if (url.pathname !== '' && url.pathname !== '/') return 'must not have a path; addresses come from routes';
  return url;
}
