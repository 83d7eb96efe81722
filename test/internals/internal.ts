/**
 * What the tests of test/internals share. Our code reads and patches private fields of a few
 * libraries (rhea, aedes, zod, modbus-serial), pinned to exact versions in package.json for that
 * reason. Each use has a test here against the real library, and `internal()` makes its failure
 * say which internal changed, in which version, and which file of ours depends on it: an upgrade
 * is caught here with its consequence named, not later as a bug in the field.
 */
import { AssertionError } from 'node:assert';
import { readFileSync } from 'node:fs';

const ROOT = new URL('../../', import.meta.url);

/** The version installed (node_modules) and the one package.json asks for. */
export function versions(library: string): { installed: string; wanted: string | undefined } {
  const installed = (JSON.parse(readFileSync(new URL(`node_modules/${library}/package.json`, ROOT), 'utf8')) as { version: string }).version;
  const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { dependencies?: Record<string, string> };
  return { installed, wanted: pkg.dependencies?.[library] };
}

/** A file of the library, as text (to check a message or an option it reads where a behaviour test cannot reach). */
export function librarySource(library: string, file: string): string {
  return readFileSync(new URL(`node_modules/${library}/${file}`, ROOT), 'utf8');
}

/**
 * Runs `check`; when it fails, fails with what changed: `<library> <version>: <internal> (used by
 * <file>) is not what uplink relies on: <why>`.
 */
export async function internal(library: string, name: string, usedBy: string, check: () => void | Promise<void>): Promise<void> {
  try {
    await check();
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new AssertionError({
      message: `${library} ${versions(library).installed}: ${name} (used by ${usedBy}) is not what uplink relies on: ${why}`,
    });
  }
}

/** A promise with a deadline: `what` names what never came. Generous: the machine is shared. */
export function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Resolves once `check` holds (checked every few ms); rejects after `ms`, naming `what`. */
export function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  return within((async () => {
    while (!check()) await new Promise((resolve) => setTimeout(resolve, 2));
  })(), what, ms);
}
