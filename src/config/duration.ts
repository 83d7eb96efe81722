/** Durations in the config: seconds (a number) or text such as `500ms`, `30s`, `15m`, `12h`, `7d`. */
import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration as seconds (a number) or text such as `500ms`, `30s`, `15m`, `12h`, `7d`; in ms. */
export const duration = z.union([
  z.number().positive('must be more than 0').transform((seconds) => seconds * 1000),
  z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'must be a duration such as 30s, 15m, 12h or 7d')
    .transform((text) => {
      const [, amount, unit] = /^([\d.]+)\s*(\w+)$/.exec(text)!;
      return Number(amount) * DURATION_UNITS[unit!]!;
    }),
], { error: 'must be a duration: seconds, or text such as 30s, 15m, 12h or 7d' });
