/** systemd-analyze, as the appliance tests use it on the unit and on the unit install.sh writes. */
import assert from 'node:assert/strict';
import { run } from './helpers.js';

/** The highest overall exposure level issue 7 accepts. */
export const MAX_EXPOSURE = 2.5;

/** `systemd-analyze verify` of `unit`: clean means exit 0 and nothing printed. */
export async function verifyUnit(analyze: string, unit: string): Promise<void> {
  const result = await run(analyze, ['verify', unit]);
  assert.equal(result.code, 0, `verify failed:\n${result.stdout}${result.stderr}`);
  assert.equal(`${result.stdout}${result.stderr}`.trim(), '', 'verify printed warnings');
}

/** The overall exposure `systemd-analyze security --offline=true` gives `unit`. */
export async function exposure(analyze: string, unit: string): Promise<number> {
  const result = await run(analyze, ['security', '--offline=true', '--no-pager', unit]);
  assert.equal(result.code, 0, result.stderr);
  const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?) /.exec(result.stdout);
  assert.ok(match, `no overall exposure level in:\n${result.stdout}`);
  return Number(match[1]);
}
