/**
 * Free space on the file system of the spool, for the two decisions that need it: whether an I/O
 * error is a full disk (errors.ts) and whether the disk reserve fits (reserve.ts).
 *
 * One rule when statfs fails: the space is unknown, Infinity. Then an I/O error is taken for a
 * failing medium and stops the spool, rather than for a full disk, which would be retried for ever
 * (a dying SD card can fail statfs too); and the reserve is attempted, and its writes fail and are
 * cleaned up the same way.
 */
import { statfsSync } from 'node:fs';

/** Bytes an unprivileged writer may still use on the file system of `dir`; Infinity when unknown. */
export function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
