/**
 * A system clock for a child process that a test can step while the process runs: libfaketime
 * (Debian `libfaketime`) preloaded, reading its offset from a file on every call
 * (FAKETIME_NO_CACHE), so rewriting the file steps the wall clock as NTP would. The monotonic clock
 * is left alone (FAKETIME_DONT_FAKE_MONOTONIC: Node 20 hangs otherwise, and a step leaves it alone
 * on a real machine too).
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian puts the library under the multiarch directory: x86_64-linux-gnu, aarch64-linux-gnu, arm-linux-gnueabihf. */
export function libfaketime(): string {
  const found = readdirSync('/usr/lib').map((dir) => join('/usr/lib', dir, 'faketime', 'libfaketime.so.1')).find((path) => existsSync(path));
  if (found === undefined) throw new Error('libfaketime.so.1 not found under /usr/lib/*/faketime: apt-get install libfaketime');
  return found;
}

export interface FakeClock {
  /** The environment that puts a child process on this clock. */
  env: NodeJS.ProcessEnv;
  /** Steps the child's system clock to `ms` since the epoch (whole seconds), from now on. */
  setTo(ms: number): Promise<void>;
  /** Steps it back to the real time. */
  setReal(): Promise<void>;
}

/** A clock that starts at `ms` since the epoch (whole seconds) and runs at the real rate from there. */
export async function fakeClock(ms: number): Promise<FakeClock> {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-faketime-'));
  const file = join(dir, 'faketime');
  // A new file renamed over the old: the child, which reads it on every call, never sees half of one.
  const write = async (spec: string): Promise<void> => {
    await writeFile(`${file}.new`, `${spec}\n`);
    await rename(`${file}.new`, file);
  };
  const setTo = (target: number): Promise<void> => {
    const offset = Math.round((target - Date.now()) / 1000);
    return write(`${offset >= 0 ? '+' : ''}${offset}s`);
  };
  await setTo(ms);
  return {
    env: {
      LD_PRELOAD: libfaketime(), FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1',
    },
    setTo,
    setReal: () => write('+0'),
  };
}
