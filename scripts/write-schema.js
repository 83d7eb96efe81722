#!/usr/bin/env node
// Writes the published JSON Schema of uplink.yaml from the built config schema, so that the file
// editors use is always the schema the gateway validates with (a test checks they match).
import { mkdirSync, writeFileSync } from 'node:fs';
import { configJsonSchema } from '../dist/config/schema.js';

mkdirSync(new URL('../schema/', import.meta.url), { recursive: true });
writeFileSync(new URL('../schema/uplink.schema.json', import.meta.url), `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
