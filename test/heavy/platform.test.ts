/**
 * Run first in the Node 22 and arm64 legs of CI (scripts/test-tree.sh): proves that the test files
 * of the run, and the processes they start with process.execPath (the gateway under test), execute
 * on the processor and Node.js major version that UPLINK_EXPECT_ARCH and UPLINK_EXPECT_NODE name,
 * and that the spool's native module loads there. Without those variables there is nothing to check.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { test } from 'node:test';

const arch = process.env.UPLINK_EXPECT_ARCH;
const major = process.env.UPLINK_EXPECT_NODE;

test('this run executes on the processor and Node.js it was made for, children included', { skip: arch === undefined || major === undefined ? 'UPLINK_EXPECT_ARCH and UPLINK_EXPECT_NODE are not set' : false }, async () => {
  assert.equal(process.arch, arch);
  assert.equal(process.versions.node.split('.')[0], major);
  const { stdout } = await promisify(execFile)(process.execPath, ['-p', 'process.arch + " " + process.versions.node']);
  assert.equal(stdout.trim().split(' ')[0], arch, 'a child started with process.execPath');
  assert.equal(stdout.trim().split(' ')[1]!.split('.')[0], major);
  const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string) => { prepare(sql: string): { get(): { v: string } }; close(): void };
  const db = new Database(':memory:');
  assert.match(db.prepare('select sqlite_version() as v').get().v, /^3\./);
  db.close();
});
