#!/usr/bin/env node
// Runs the test suite with node's own test runner. Node 20 has no glob support in `--test`, so
// the files are found here. Arguments narrow the run to files or folders: `node scripts/run-tests.js test/unit`;
// without any, every test/**/*.test.ts but those of test/heavy.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(path, out) {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path).sort()) collect(join(path, entry), out);
  } else if (path.endsWith('.test.ts')) {
    out.push(path);
  }
  return out;
}

const roots = process.argv.slice(2);
// test/heavy (a Debian root booted under systemd, arm64 under emulation, Node 22) runs only when
// named: .ci/run runs it as a step of its own, after `npm test`.
const files = (roots.length > 0 ? roots : ['test']).flatMap((root) => collect(root, []))
  .filter((file) => roots.length > 0 || !file.startsWith(join('test', 'heavy')));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// One file at a time: the integration tests start brokers and would fight over the 2 cores.
const result = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit' });
process.exit(result.status ?? 1);
