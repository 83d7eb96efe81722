/**
 * "unknown key" messages that name the key probably meant, found among the keys the schema allows
 * at that place: a misspelt key is the commonest config mistake.
 */
import type { z } from 'zod';
import type { PathSegment } from './issues.js';
import { ConfigSchema } from './schema.js';

type Def = { type: string; innerType?: z.ZodType; element?: z.ZodType; shape?: Record<string, z.ZodType>; in?: z.ZodType };

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** The keys allowed in the object at `path`, or none when the path leads elsewhere. */
export function keysAt(path: readonly PathSegment[]): string[] {
  let schema: z.ZodType | undefined = ConfigSchema;
  const unwrap = (s: z.ZodType): z.ZodType => {
    let current = s;
    for (let def = defOf(current); def.innerType !== undefined || def.in !== undefined; def = defOf(current)) {
      current = (def.innerType ?? def.in)!;
    }
    return current;
  };
  for (const segment of path) {
    const def = defOf(unwrap(schema));
    schema = typeof segment === 'number' ? def.element : def.shape?.[segment];
    if (schema === undefined) return [];
  }
  return Object.keys(defOf(unwrap(schema)).shape ?? {});
}

export function unknownKeyMessage(path: readonly PathSegment[], key: string): string {
  const known = keysAt(path);
  const best = known
    .map((candidate) => ({ candidate, distance: editDistance(key.toLowerCase(), candidate.toLowerCase()) }))
    .sort((a, b) => a.distance - b.distance)[0];
  if (best !== undefined && best.distance <= Math.max(2, Math.floor(key.length / 3))) {
    return `unknown key (did you mean '${best.candidate}'?)`;
  }
  return known.length > 0 ? `unknown key (allowed here: ${known.join(', ')})` : 'unknown key';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
