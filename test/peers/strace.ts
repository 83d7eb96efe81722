/**
 * strace as a test peer: a wrapper for startGateway that records chosen system calls of every
 * thread (-f) with their buffers, their file descriptors resolved to paths and sockets (-yy), and
 * entry times and durations in ns; and injects faults (`-e inject=`, only into traced syscalls).
 *
 * Why the timestamps prove an order: strace stamps a call when the thread stops at its entry
 * (before the kernel runs it) and at its exit (after the kernel finished it), and the thread stays
 * stopped meanwhile. So `a.end < b.start` means a had finished before b began.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export const STRACE = '/usr/bin/strace';

/** True when strace can trace here (it needs ptrace: root, or a permissive yama scope). */
export function straceWorks(): boolean {
  try {
    execFileSync(STRACE, ['-f', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface StraceOptions {
  /** Where the trace goes. */
  output: string;
  /** Syscalls to record (`-e trace=`). */
  trace: string[];
  /** Faults, each an `-e inject=` expression such as `fdatasync:error=EIO:when=8`. */
  inject?: string[];
  /** Record (and inject into) only calls that access these paths (`-P`). */
  paths?: string[];
  /** Bytes of each buffer to record; enough for a whole SQLite page by default. */
  stringLimit?: number;
}

/** The wrapper for startGateway: `strace … node dist/cli.js run …`. */
export function straceWrapper(options: StraceOptions): { command: string; args: string[] } {
  const args = [
    '-f', '--seccomp-bpf', '-qq', '-o', options.output,
    '--absolute-timestamps=unix,ns', '--syscall-times=ns', '-yy', '-x',
    '-s', String(options.stringLimit ?? 8192), '-e', 'signal=none',
    '-e', `trace=${options.trace.join(',')}`,
  ];
  for (const expression of options.inject ?? []) args.push('-e', `inject=${expression}`);
  for (const path of options.paths ?? []) args.push('-P', path);
  return { command: STRACE, args };
}

export interface Syscall {
  /** The thread (strace prints the thread id; the main thread's is the process id). */
  tid: number;
  name: string;
  fd: number | undefined;
  /** What -yy printed for the fd: a path, or `TCP:[local->remote]`, `pipe:[…]`, … */
  target: string | undefined;
  /** ns since the first call of the trace, at entry and at exit. */
  start: number;
  end: number;
  /** undefined when the process ended inside the call (`= ?`). */
  ret: number | undefined;
  errno: string | undefined;
  injected: boolean;
  /** The bytes of the buffer argument (write, pwrite64) or of every iovec in order (writev). */
  data: Buffer | undefined;
  /** The buffer was longer than the string limit: `data` is its beginning. */
  truncated: boolean;
  line: string;
}

export async function readTrace(file: string): Promise<Syscall[]> {
  return parseTrace(await readFile(file, 'latin1'));
}

const HEAD = /^(\d+) +(\d+)\.(\d+) (.*)$/;
const UNFINISHED = ' <unfinished ...>';
const RESUMED = /^<\.\.\. (\w+) resumed>(.*)$/;
const RESULT = / = (-?\d+|\?)(?: (E[A-Z0-9]+) \([^)]*\))?( \(INJECTED\))?(?: <(\d+)\.(\d+)>)?$/;
const FD = /^(\d+)<((?:[A-Za-z0-9-]+:\[[^\]]*\])|[^>]*)>/;
const STRING = /"((?:[^"\\]|\\.)*)"(\.\.\.)?/g;

/**
 * One record per syscall, in the order of their entry. A call that another thread interrupted in
 * the trace is printed as `… <unfinished ...>` and later `<... name resumed> …) = ret`: the two
 * halves are joined (by thread), with the entry time of the first.
 */
export function parseTrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<number, { body: string; start: number }>();
  let base: number | undefined;
  for (const line of text.split('\n')) {
    const head = HEAD.exec(line);
    if (head === null) continue;
    const tid = Number(head[1]);
    const seconds = Number(head[2]);
    base ??= seconds;
    const at = (seconds - base) * 1e9 + Number(head[3]!.padEnd(9, '0'));
    let body = head[4]!;
    if (body.startsWith('+++') || body.startsWith('---')) continue;
    let start = at;
    if (body.endsWith(UNFINISHED)) {
      open.set(tid, { body: body.slice(0, -UNFINISHED.length), start: at });
      continue;
    }
    const resumed = RESUMED.exec(body);
    if (resumed !== null) {
      const first = open.get(tid);
      open.delete(tid);
      // The entry was before the trace began (or belongs to a detached thread): no record.
      if (first === undefined) continue;
      body = first.body + resumed[2]!;
      start = first.start;
    }
    const call = parseCall(tid, start, body, line);
    if (call !== undefined) calls.push(call);
  }
  return calls.sort((a, b) => a.start - b.start);
}

function parseCall(tid: number, start: number, body: string, line: string): Syscall | undefined {
  const paren = body.indexOf('(');
  const result = RESULT.exec(body);
  if (paren < 0 || result === null) return undefined;
  const name = body.slice(0, paren);
  const args = body.slice(paren + 1, result.index);
  const fd = FD.exec(args);
  const duration = result[4] === undefined ? 0 : Number(result[4]) * 1e9 + Number(result[5]!.padEnd(9, '0'));
  let data: Buffer | undefined;
  let truncated = false;
  if (/^(write|writev|pwrite64|pwritev|pwritev2|sendmsg|sendto)$/.test(name)) {
    const parts: Buffer[] = [];
    for (const match of args.slice(fd?.[0].length ?? 0).matchAll(STRING)) {
      parts.push(unescapeC(match[1]!));
      if (match[2] !== undefined) truncated = true;
      // write and pwrite64 have one buffer; what follows is not data.
      if (name === 'write' || name === 'pwrite64' || name === 'sendto') break;
    }
    data = Buffer.concat(parts);
  }
  return {
    tid, name, start, end: start + duration,
    fd: fd === null ? undefined : Number(fd[1]),
    target: fd === null ? undefined : fd[2],
    ret: result[1] === '?' ? undefined : Number(result[1]),
    errno: result[2],
    injected: result[3] !== undefined,
    data, truncated, line,
  };
}

const SIMPLE: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, '\\': 92 };

/** A string as strace prints it (C escapes: \xNN with -x, octal, \n…) back to its bytes. */
export function unescapeC(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      bytes.push(text.charCodeAt(i) & 0xff);
      continue;
    }
    const next = text[++i]!;
    if (next === 'x') {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (next >= '0' && next <= '7') {
      let digits = next;
      while (digits.length < 3 && text[i + 1] !== undefined && text[i + 1]! >= '0' && text[i + 1]! <= '7') digits += text[++i];
      bytes.push(parseInt(digits, 8));
    } else if (SIMPLE[next] !== undefined) {
      bytes.push(SIMPLE[next]!);
    } else {
      throw new Error(`strace: unknown escape \\${next} in ${JSON.stringify(text.slice(0, 80))}`);
    }
  }
  return Buffer.from(bytes);
}

/** The bytes a write-like call actually wrote: its buffer, cut to what it returned. */
export function written(call: Syscall): Buffer {
  if (call.data === undefined || call.ret === undefined || call.ret <= 0) return Buffer.alloc(0);
  if (call.truncated && call.data.length < call.ret) {
    throw new Error(`strace: ${call.name} wrote ${call.ret} bytes but only ${call.data.length} were recorded; raise stringLimit`);
  }
  return call.data.subarray(0, call.ret);
}

/**
 * For a test that needs strace: true when it works; otherwise skips the test, or fails it under
 * CI=true (a missing peer is a failure there, never a skip).
 */
export function needStrace(t: { skip(message?: string): void }): boolean {
  if (straceWorks()) return true;
  const why = `${STRACE} cannot trace here (apt-get install strace; it needs ptrace, e.g. root)`;
  if (process.env.CI === 'true') throw new Error(why);
  t.skip(why);
  return false;
}
