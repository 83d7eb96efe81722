/**
 * What changed between two configs, as key paths (`mqtt.port`, `routes[1].address`), for the
 * SIGHUP log line that names what needs a restart. Only paths: values (a password, a path to a
 * key) never leave this function.
 */
export function changedPaths(before: unknown, after: unknown, path = ''): string[] {
  if (Object.is(before, after)) return [];
  if (Array.isArray(before) && Array.isArray(after)) {
    const paths: string[] = [];
    for (let i = 0; i < Math.max(before.length, after.length); i++) {
      paths.push(...(i < before.length && i < after.length ? changedPaths(before[i], after[i], `${path}[${i}]`) : [`${path}[${i}]`]));
    }
    return paths;
  }
  if (isRecord(before) && isRecord(after)) {
    const paths: string[] = [];
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      paths.push(...changedPaths(before[key], after[key], path === '' ? key : `${path}.${key}`));
    }
    return paths;
  }
  return [path === '' ? '(the whole config)' : path];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
