/**
 * Loading the config: YAML text → schema (with defaults) → checks across fields and files →
 * paths resolved. Every problem found is collected and thrown as one ConfigError.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { GatewayError } from '../core/errors.js';
import { checkCombinations, checkFiles, FILE_PATHS, valueAt } from './checks.js';
import { checkTlsMaterial } from './tls-check.js';
import { ConfigError, formatPath, type ConfigIssue, type PathSegment } from './issues.js';
import { ConfigSchema, type Config } from './schema.js';
import { unknownKeyMessage } from './suggest.js';
import { readYaml } from './yaml-source.js';

export async function loadConfigFile(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code ?? String(err);
    throw new GatewayError('CONFIG_UNREADABLE', `cannot read config file ${file}: ${why}`, { cause: err });
  }
  return parseConfig(text, { source: file, baseDir: dirname(resolve(file)) });
}

/** The config uplink runs on when no file is given. */
export function defaultConfig(baseDir = process.cwd()): Config {
  return parseConfig('', { source: '(defaults)', baseDir });
}

export interface ParseOptions {
  /** Shown in errors: the file name. */
  source: string;
  /** Relative paths in the config are resolved against this directory. */
  baseDir: string;
}

export function parseConfig(text: string, options: ParseOptions): Config {
  const yaml = readYaml(text);
  if (yaml.data === undefined) throw new ConfigError(options.source, yaml.issues);
  const issues: Array<{ path: PathSegment[]; message: string }> = [];

  const result = ConfigSchema.safeParse(yaml.data, { error: messageFor });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((p): p is PathSegment => typeof p !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) issues.push({ path: [...path, key], message: unknownKeyMessage(path, key) });
      } else {
        issues.push({ path, message: issue.message });
      }
    }
  }
  const fileIssues = checkFiles(yaml.data, options.baseDir);
  issues.push(...fileIssues);
  if (result.success) issues.push(...checkCombinations(result.data as Config));
  if (result.success && fileIssues.length === 0) issues.push(...checkTlsMaterial(result.data as Config, options.baseDir));

  if (issues.length > 0) {
    const located = issues.map((issue): ConfigIssue => {
      const line = text === '' ? undefined : yaml.lineOf(issue.path);
      return { path: formatPath(issue.path), message: issue.message, ...(line === undefined ? {} : { line }) };
    });
    // In file order, so the list reads top to bottom like the file being fixed.
    located.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw new ConfigError(options.source, located);
  }
  return resolvePaths(result.data as Config, options.baseDir);
}

/** Plain messages for the generic cases; the schema's own messages take precedence. */
function messageFor(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_union' && issue.input === undefined) return 'is required';
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return 'is required';
    const got = issue.input === null ? 'null' : Array.isArray(issue.input) ? 'a list' : typeof issue.input;
    const expected = issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`;
    return `must be ${expected}, not ${got}`;
  }
  return undefined;
}

function resolvePaths(parsed: Config, baseDir: string): Config {
  // A deep copy, so the paths can be rewritten in place.
  const config = structuredClone({ ...parsed, gatewayId: parsed.gatewayId ?? hostname(), dataDir: resolve(baseDir, parsed.dataDir) });
  for (const path of FILE_PATHS) {
    const parent = valueAt(config, path.slice(0, -1)) as Record<string, unknown> | undefined;
    const key = path.at(-1)!;
    if (parent !== undefined && typeof parent[key] === 'string') parent[key] = resolve(baseDir, parent[key]);
  }
  return config;
}
