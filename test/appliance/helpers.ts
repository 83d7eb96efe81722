/**
 * Helpers of the appliance tests: a tool check that fails in CI (never skips there), polling
 * without timed assertions, a Prometheus text parser, and the systemd side of sd_notify.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';
export const HERE = fileURLToPath(new URL('.', import.meta.url));
export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The path of `tool` (absolute, or looked up on PATH). Missing: a failure under CI=true, else the test is skipped. */
export function requireTool(t: TestContext, tool: string, why: string): string | undefined {
  const candidates = tool.startsWith('/') ? [tool] : (process.env.PATH ?? '').split(':').map((dir) => `${dir}/${tool}`);
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory; try the next
    }
  }
  const message = `${tool} is missing (${why})`;
  if (process.env.CI === 'true') assert.fail(`${message}; in CI a missing tool is a failure`);
  t.skip(message);
  return undefined;
}

/** Polls `condition` until it holds; fails after `ms` (a limit, not a measurement). */
export async function until(condition: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}):
Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, { env: options.env ?? process.env, cwd: options.cwd, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * The samples of a Prometheus text exposition (format 0.0.4), keyed by name and labels as
 * written; throws on a line that is neither a sample, a HELP/TYPE comment nor empty, and on a
 * sample whose metric has no TYPE line before it.
 */
export function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      typed.add(type[1]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|\+Inf|-Inf))$/i.exec(line);
    assert.ok(match, `not Prometheus text: ${line}`);
    const name = match[1]!;
    const family = [...typed].find((f) => name === f || name === `${f}_bucket` || name === `${f}_sum` || name === `${f}_count`);
    assert.ok(family !== undefined, `sample of ${name} without a # TYPE line`);
    samples.set(`${name}${match[2] ?? ''}`, Number(match[3]!.replace(/^nan$/i, 'NaN')));
  }
  return samples;
}

export interface NotifySocket {
  path: string;
  /** Every datagram received so far, in order. */
  messages: string[];
  waitFor(message: string, timeoutMs?: number): Promise<void>;
  /** Sends a datagram of our own (to mark a point in the sequence). */
  send(message: string): Promise<void>;
  close(): Promise<void>;
}

/** Binds a unix datagram socket at `path`, as systemd binds NOTIFY_SOCKET, with Python's socket module. */
export async function notifySocket(path: string): Promise<NotifySocket> {
  const child = spawn(PYTHON, [`${HERE}notify_listener.py`, path], { stdio: ['pipe', 'pipe', 'pipe'] });
  const messages: string[] = [];
  let stderr = '';
  let buffered = '';
  let listening!: () => void;
  const bound = new Promise<void>((resolve) => { listening = resolve; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line === 'listening') listening();
      else if (line !== '') messages.push(JSON.parse(line) as string);
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await Promise.race([bound, exited.then(() => { throw new Error(`notify listener exited: ${stderr}`); })]);
  return {
    path,
    messages,
    waitFor: (message, timeoutMs = 20_000) => until(() => messages.includes(message), `${message} on NOTIFY_SOCKET (got ${JSON.stringify(messages)})`, timeoutMs),
    async send(message) {
      const result = await run(PYTHON, [`${HERE}notify_send.py`, path, message]);
      assert.equal(result.code, 0, result.stderr);
    },
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}
