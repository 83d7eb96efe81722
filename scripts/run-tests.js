#!/usr/bin/env node
// Runs the test suite with node's own test runner. Node 20 has no glob support in `--test`, so
// the files are found here. Arguments narrow the run to files or folders: `node scripts/run-tests.js test/unit`.
// UPLINK_LIST_TESTS=1 lists the files instead of running them.
//
// Folders that are not part of a plain run unless named as an argument (CI runs the first two as
// steps of their own, after `npm test`):
// - test/brokers: RabbitMQ 4 from a Debian 13 root (built once with debootstrap) and the shared
//   data-path suite against each broker (`npm run test:brokers`).
// - test/heavy: a Debian root booted under systemd, arm64 under emulation, Node 22 (.ci/heavy).
// - test/brokers/activemq: needs ActiveMQ's AMQP module, which neither Debian nor npm has (README,
//   "Brokers"); run by hand.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, normalize } from 'node:path';

const OWN_STEP = ['test/brokers', 'test/heavy', 'test/brokers/activemq'].map((dir) => normalize(dir));

function collect(path, out, root) {
  if (statSync(path).isDirectory()) {
    if (OWN_STEP.includes(normalize(path)) && normalize(path) !== normalize(root)) return out;
    for (const entry of readdirSync(path).sort()) collect(join(path, entry), out, root);
  } else if (path.endsWith('.test.ts')) {
    out.push(path);
  }
  return out;
}

const roots = process.argv.slice(2);
const files = (roots.length > 0 ? roots : ['test']).flatMap((root) => collect(root, [], root));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
if (process.env.UPLINK_LIST_TESTS !== undefined) {
  console.log(files.join('\n'));
  process.exit(0);
}
// One file at a time: the integration tests start brokers and would fight over the 2 cores.
const result = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit' });
process.exit(result.status ?? 1);
