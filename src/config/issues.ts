/**
 * Config errors: every problem is one `ConfigIssue`, reported together as `path: message` lines,
 * so a person fixes the whole file in one go instead of one error per run.
 */
import { GatewayError } from '../core/errors.js';

export type PathSegment = string | number;

export interface ConfigIssue {
  /** e.g. `upstream.tls.key` or `routes[1].address`; empty for the file as a whole. */
  path: string;
  message: string;
  /** 1-based line in the config file, where it can be found. */
  line?: number;
}

export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? '' : ` (line ${issue.line})`;
  return `${issue.path === '' ? '(config)' : issue.path}: ${issue.message}${where}`;
}

export class ConfigError extends GatewayError {
  readonly issues: readonly ConfigIssue[];
  readonly source: string;

  constructor(source: string, issues: readonly ConfigIssue[]) {
    super('CONFIG_INVALID', `${source}: ${issues.length} error${issues.length === 1 ? '' : 's'}\n` +
      issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.source = source;
    this.issues = issues;
  }
}
