/**
 * `uplink status [--config FILE] [--json]`: asks the running gateway (GET /status on the host
 * and port of the config's `http` section) and prints a summary, or the JSON itself.
 *
 * Only the `http` section of the config is read, so that a user who may not read the TLS keys
 * named in the file can still ask. Exit 0 when the gateway answered (ready or not: the text says
 * which), 1 when it does not answer, 2 on wrong usage.
 */
import { readFile, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigSchema } from '../config/schema.js';
import { readYaml } from '../config/yaml-source.js';
import { GatewayError } from '../core/errors.js';

export const STATUS_HELP = `uplink status: how the running gateway does (asks its GET /status)

  uplink status [--config FILE] [--json]

  -c, --config FILE   the gateway's config; only its http section is read (host, port).
                      Default: /etc/uplink/uplink.yaml if it exists, else 127.0.0.1:9464
  --json              print the JSON document of /status as it is

Exit codes: 0 the gateway answered, 1 it did not (not running, another port, or something
else answers there), 2 wrong usage.
`;

export const DEFAULT_CONFIG_FILE = '/etc/uplink/uplink.yaml';
const TIMEOUT_MS = 5000;

export async function statusCommand(args: string[], out: (text: string) => void, defaultFile = DEFAULT_CONFIG_FILE): Promise<number> {
  let values: { config?: string; json?: boolean };
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new GatewayError('USAGE', `status: ${(err as Error).message}`);
  }
  // Only a file that is not there means "no config": in /etc/uplink (root:uplink 0750) a user
  // outside the group cannot even see whether it is (EACCES), and is told so below.
  let file = values.config ?? (await isMissing(defaultFile) ? undefined : defaultFile);
  let hint = '';
  let endpoint: { host: string; port: number };
  try {
    endpoint = await httpEndpoint(file);
  } catch (err) {
    // /etc/uplink/uplink.yaml is root:uplink 0640: a user outside the group asks on the defaults.
    if (values.config !== undefined || !(err instanceof GatewayError) || err.code !== 'CONFIG_UNREADABLE') throw err;
    hint = ` (${file} is not readable: the defaults were used; try sudo, or --config FILE)`;
    file = undefined;
    endpoint = await httpEndpoint(undefined);
  }
  const { host, port } = endpoint;
  const url = `http://${urlHost(host)}:${port}/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new GatewayError('IO', `status: no uplink gateway answers at ${url} (${cause}). Is it running ('systemctl status uplink')` +
      `${file === undefined ? '' : `, with http.host/http.port as in ${file}`}?${hint}`, { cause: err });
  }
  let body: unknown;
  let problem: string | undefined;
  try {
    body = await res.json();
    problem = res.ok ? statusProblem(body, values.json === true) : `HTTP ${res.status}`;
  } catch (err) {
    problem = res.ok ? `not JSON: ${(err as Error).message}` : `HTTP ${res.status}`;
  }
  if (problem !== undefined) {
    throw new GatewayError('IO', `status: what answers at ${url} is not an uplink gateway's /status (${problem}). ` +
      `Is another service on port ${port}? Set http.port${file === undefined ? '' : ` in ${file}`}, or --config FILE.${hint}`);
  }
  out(values.json === true ? `${JSON.stringify(body, null, 2)}\n` : summary(body as Status));
  return 0;
}

async function isMissing(file: string): Promise<boolean> {
  try {
    await stat(file);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** The host and port of the http section (defaults when there is no file). */
async function httpEndpoint(file: string | undefined): Promise<{ host: string; port: number }> {
  let raw: unknown = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new GatewayError('CONFIG_UNREADABLE', `status: cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
    const yaml = readYaml(text);
    if (yaml.data === undefined) throw new GatewayError('CONFIG_INVALID', `${file}: ${yaml.issues.map((i) => i.message).join('; ')}`);
    raw = (yaml.data as Record<string, unknown> | null)?.http;
  }
  const http = ConfigSchema.shape.http.safeParse(raw);
  if (!http.success) {
    throw new GatewayError('CONFIG_INVALID', `${file}: ${http.error.issues.map((i) => `http.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return http.data;
}

/** A wildcard listen address is reached on loopback; an IPv6 literal needs brackets in a URL. */
function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

interface Figures { ingested: number; forwarded: number; spooled: number }
interface Status {
  gatewayId: string; version: string; uptimeSeconds: number; ready: boolean;
  conditions: Record<string, { ready: boolean; reason?: string }>;
  listeners: Array<{ protocol: string; host: string; port: number }>;
  serial: Array<{ name: string; path: string; open: boolean }>;
  upstream: null | { connected: boolean; url: string; credit: number; reconnects: number; lastError: null | { message: string } };
  spool: { depth: number; bytes: number; inFlight: number; oldestAgeSeconds: number; deadLetters: number;
    dropped: Record<string, number>; blocked: boolean; diskFull: boolean };
  totals: { ingested: number; forwarded: number; rejected: Record<string, number> };
  rates: { windowSeconds: number; ingestedPerSecond: number; forwardedPerSecond: number };
  routes: Array<{ topic: string; address: string } & Figures>;
}

/**
 * Why `body` is not a /status document the summary can print (undefined: it is). With `--json`
 * only the identity is checked (it is printed as it is).
 */
function statusProblem(body: unknown, identityOnly: boolean): string | undefined {
  if (!isObject(body)) return 'not a JSON object';
  if (typeof body.gatewayId !== 'string' || typeof body.version !== 'string') return 'no gatewayId and version';
  if (identityOnly) return undefined;
  const numbers = (o: unknown, ...keys: string[]): boolean => isObject(o) && keys.every((k) => typeof o[k] === 'number');
  const counts = (o: unknown): boolean => isObject(o) && Object.values(o).every((n) => typeof n === 'number');
  const checks: Array<[string, boolean]> = [
    ['uptimeSeconds', typeof body.uptimeSeconds === 'number'],
    ['ready', typeof body.ready === 'boolean'],
    ['conditions', isObject(body.conditions) && Object.values(body.conditions).every((c) => isObject(c) && typeof c.ready === 'boolean')],
    ['upstream', body.upstream === null || (isObject(body.upstream) && typeof body.upstream.connected === 'boolean'
      && typeof body.upstream.url === 'string' && numbers(body.upstream, 'credit', 'reconnects')
      && (body.upstream.lastError === null || (isObject(body.upstream.lastError) && typeof body.upstream.lastError.message === 'string')))],
    ['spool', numbers(body.spool, 'depth', 'bytes', 'inFlight', 'oldestAgeSeconds', 'deadLetters') && isObject(body.spool)
      && counts(body.spool.dropped) && typeof body.spool.blocked === 'boolean' && typeof body.spool.diskFull === 'boolean'],
    ['rates', numbers(body.rates, 'windowSeconds', 'ingestedPerSecond', 'forwardedPerSecond')],
    ['totals', numbers(body.totals, 'ingested', 'forwarded') && isObject(body.totals) && counts(body.totals.rejected)],
    ['listeners', Array.isArray(body.listeners) && body.listeners.every((l) => isObject(l) && typeof l.protocol === 'string'
      && typeof l.host === 'string' && typeof l.port === 'number')],
    ['serial', Array.isArray(body.serial) && body.serial.every((p) => isObject(p) && typeof p.name === 'string'
      && typeof p.path === 'string' && typeof p.open === 'boolean')],
    ['routes', Array.isArray(body.routes) && body.routes.every((r) => isObject(r) && typeof r.topic === 'string'
      && typeof r.address === 'string' && numbers(r, 'ingested', 'forwarded', 'spooled'))],
  ];
  const bad = checks.filter(([, ok]) => !ok).map(([key]) => key);
  return bad.length === 0 ? undefined : `unexpected ${bad.join(', ')}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function summary(s: Status): string {
  const lines: string[] = [];
  const notReady = Object.entries(s.conditions).filter(([, c]) => !c.ready).map(([name, c]) => `${name}: ${c.reason ?? 'not ready'}`);
  lines.push(`uplink ${s.version} (${s.gatewayId}): up ${duration(s.uptimeSeconds)}, ${s.ready ? 'ready' : `NOT READY (${notReady.join('; ')})`}`);
  const up = s.upstream;
  lines.push(`  upstream   ${up === null ? 'none configured: readings wait in the spool'
    : up.connected ? `connected to ${up.url}, credit ${up.credit}, ${up.reconnects} reconnects`
      : `NOT CONNECTED to ${up.url}${up.lastError === null ? '' : `: ${up.lastError.message}`} (${up.reconnects} reconnects)`}`);
  const sp = s.spool;
  const dropped = Object.entries(sp.dropped).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why}`);
  lines.push(`  spool      ${sp.depth} readings (${bytes(sp.bytes)}), ${sp.depth === 0 ? 'empty' : `oldest ${duration(sp.oldestAgeSeconds)} old`}` +
    `, ${sp.inFlight} in flight, ${sp.deadLetters} dead letters${dropped.length > 0 ? `, dropped ${dropped.join(', ')}` : ''}` +
    `${sp.blocked ? ', BLOCKED (full: devices are held back)' : ''}${sp.diskFull ? ', DISK FULL' : ''}`);
  lines.push(`  rates      in ${s.rates.ingestedPerSecond}/s, out ${s.rates.forwardedPerSecond}/s (over the last ${Math.round(s.rates.windowSeconds)} s)`);
  const rejected = Object.entries(s.totals.rejected).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why}`);
  lines.push(`  totals     ${s.totals.ingested} in, ${s.totals.forwarded} out since start${rejected.length > 0 ? `; refused ${rejected.join(', ')}` : ''}`);
  lines.push(`  listeners  ${s.listeners.map((l) => `${l.protocol} ${l.host}:${l.port}`).join(', ')}`);
  if (s.serial.length > 0) lines.push(`  serial     ${s.serial.map((p) => `${p.name} (${p.path}) ${p.open ? 'open' : 'NOT OPEN'}`).join(', ')}`);
  lines.push('  routes');
  for (const r of s.routes) lines.push(`    ${r.topic} -> ${r.address}: ${r.ingested} in, ${r.forwarded} out, ${r.spooled} spooled`);
  return `${lines.join('\n')}\n`;
}

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds * 10) / 10}s`;
  const s = Math.floor(seconds);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
