#!/usr/bin/env node
// Node-RED finds a node's editor HTML beside its JS, with the same base name: copies
// src/node-red/*.html next to the compiled dist/node-red/*.js, and fails if one has no JS.
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const from = 'src/node-red';
const to = 'dist/node-red';
mkdirSync(to, { recursive: true });
const html = readdirSync(from).filter((name) => name.endsWith('.html'));
for (const name of html) {
  const js = join(to, name.replace(/\.html$/, '.js'));
  if (!existsSync(js)) {
    console.error(`copy-node-red-html: ${join(from, name)} has no ${js}`);
    process.exit(1);
  }
  copyFileSync(join(from, name), join(to, name));
}
console.log(`copy-node-red-html: ${html.length} editor files to ${to}`);
