/**
 * A bug that escapes every handler must still end the process with one JSON line that says what
 * happened (for journald), and exit 70 so that systemd restarts it. The fault is injected into the
 * real, running gateway by a preload of this test (test/peers/crash-preload.mjs, loaded with
 * NODE_OPTIONS=--import), triggered once the gateway has logged 'gateway started'.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { startGateway } from '../peers/gateway.js';

const PRELOAD = fileURLToPath(new URL('../peers/crash-preload.mjs', import.meta.url));
const EXIT_BUG = 70;

const CASES = [
  { crash: 'rejection', kind: 'unhandled promise rejection', message: 'injected rejection' },
  { crash: 'exception', kind: 'uncaught exception', message: 'injected exception' },
  { crash: 'rejection-not-error', kind: 'unhandled promise rejection', message: 'injected reason' },
] as const;

describe('a crash of the running gateway ends with one JSON line', () => {
  for (const { crash, kind, message } of CASES) {
    test(`${crash}: exactly one fatal JSON line naming it ("${kind}: ${message}"), then exit 70`, async (t) => {
      const gw = await startGateway({ env: { NODE_OPTIONS: `--import ${PRELOAD}`, UPLINK_TEST_CRASH: crash } });
      t.after(async () => {
        await gw.stop('SIGKILL');
        await rm(gw.dir, { recursive: true, force: true });
      });
      gw.child.kill('SIGUSR2');
      const exit = await gw.exited;
      const fatal = gw.logs.filter((line) => line.level === 'fatal');
      assert.deepEqual(exit, { code: EXIT_BUG, signal: null }, `exit 70 (stderr: ${gw.stderr()})`);
      assert.equal(fatal.length, 1, `exactly one fatal line:\n${gw.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      assert.equal(fatal[0]!.msg, `${kind}: ${message}; exiting`);
      assert.equal(gw.logs.at(-1), fatal[0], 'the fatal line is the last one');
      assert.equal(fatal[0]!.gatewayId, 'test-gw');
      if (crash !== 'rejection-not-error') {
        assert.match(String((fatal[0]!.err as { stack?: unknown } | undefined)?.stack), new RegExp(`Error: ${message}\\n\\s+at `), 'the line carries the stack');
      }
      assert.deepEqual(gw.nonJson, [], 'every stdout line is JSON');
      assert.equal(gw.stderr(), '', 'nothing on stderr: the JSON line is the whole report');
    });
  }
});
