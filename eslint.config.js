// Lint rules, including the module boundaries of DESIGN.md: which folder of src/ may import which.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * `no-restricted-imports` patterns (gitignore syntax): everything outside the folder is forbidden
 * except `allowed`. A single allowed file needs its folder re-included, then the folder's other
 * files excluded again.
 */
function onlyImports(depth, allowed, libraries = []) {
  const up = depth === 0 ? './' : '../'.repeat(depth);
  const patterns = allowed.flatMap((a) => {
    if (!a.endsWith('.js') || !a.includes('/')) return [`!${up}${a}`];
    const parts = a.split('/');
    const folders = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
    return [...folders.flatMap((f) => [`!${up}${f}`, `${up}${f}/*`]), `!${up}${a}`];
  });
  return {
    'no-restricted-imports': ['error', {
      patterns: [
        // Two files of one folder would list the folder twice; eslint refuses duplicates.
        { group: [...new Set([`${up}*`, ...patterns])], message: 'DESIGN.md: this module may not import that one' },
        ...(libraries.length > 0 ? [{ group: libraries, message: 'DESIGN.md: only one module talks to this library' }] : []),
      ],
    }],
  };
}

const ONLY_UPSTREAM = ['rhea', 'rhea/*'];
const ONLY_SPOOL = ['better-sqlite3'];
const ONLY_MQTT = ['aedes', 'aedes/*'];
const ONLY_SERIAL = ['serialport', '@serialport/*'];
const ONLY_MODBUS = ['modbus-serial', 'modbus-serial/*'];
const ALL_LIBS = [...ONLY_UPSTREAM, ...ONLY_SPOOL, ...ONLY_MQTT, ...ONLY_SERIAL, ...ONLY_MODBUS];
const without = (libs) => ALL_LIBS.filter((l) => !libs.includes(l));

/**
 * Rules for every file under src/<folder>/ (at any depth): imports that leave the folder must go
 * to `allowed` (folders or files, relative to src/). Files of a deeper folder with rules of its
 * own (ingest/mqtt inside ingest) get those instead, since later entries win.
 */
function boundary(folder, allowed, libraries) {
  const base = folder.split('/').length;
  const expand = allowed.flatMap((a) => (a.endsWith('.js') ? [a] : [a, `${a}/*`, `${a}/**`]));
  return [0, 1, 2].map((extra) => ({
    files: [`src/${folder}/${'*/'.repeat(extra)}*.ts`],
    rules: onlyImports(base + extra, expand, libraries),
  }));
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'data/', 'schema/'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: false }],
      eqeqeq: ['error', 'always'],
    },
  },
  ...boundary('core', ['core'], ALL_LIBS),
  ...boundary('config', ['core'], ALL_LIBS),
  ...boundary('route', ['core'], ALL_LIBS),
  ...boundary('ops', ['core'], ALL_LIBS),
  ...boundary('spool', ['core'], without(ONLY_SPOOL)),
  ...boundary('upstream', ['core'], without(ONLY_UPSTREAM)),
  ...boundary('forward', ['core', 'spool/interface.js', 'upstream/interface.js'], ALL_LIBS),
  ...boundary('ingest', ['core', 'route', 'spool/interface.js'], ALL_LIBS),
  ...boundary('ingest/mqtt', ['core', 'route', 'spool/interface.js', 'ingest/interface.js'], without(ONLY_MQTT)),
  ...boundary('ingest/serial', ['core', 'route', 'spool/interface.js', 'ingest/interface.js', 'ingest/append-in-order.js'], without(ONLY_SERIAL)),
  // Modbus RTU runs on serial lines too: serialport, behind modbus-serial's client.
  ...boundary('ingest/modbus', ['core', 'route', 'spool/interface.js', 'ingest/interface.js', 'ingest/append-in-order.js'], without([...ONLY_SERIAL, ...ONLY_MODBUS])),
  ...boundary('downlink', ['core', 'upstream/downlink.js', 'upstream/interface.js'], ALL_LIBS),
  // The Node-RED nodes get the pipeline from pipeline.ts and see it through the interfaces only.
  ...boundary('node-red', ['core', 'config', 'pipeline.js', 'spool/interface.js', 'upstream/interface.js', 'upstream/downlink.js'], ALL_LIBS),
  // The one place that names the concrete spool and upstream (and the forwarder between them).
  { files: ['src/pipeline.ts'], rules: onlyImports(0, ['config', 'config/*', 'core', 'core/*', 'route', 'route/*', 'forward', 'forward/*', 'spool', 'spool/**', 'upstream', 'upstream/**'], ALL_LIBS) },
  { files: ['src/gateway.ts'], rules: onlyImports(0, ['pipeline.js', 'version.js', 'config', 'config/*', 'core', 'core/*', 'ops', 'ops/*', 'downlink', 'downlink/*', 'ingest', 'ingest/**', 'spool/interface.js', 'upstream/interface.js'], ALL_LIBS) },
  { files: ['src/demo/*.ts'], rules: onlyImports(1, ['gateway.js', 'config', 'config/*', 'core', 'core/*', 'upstream/amqp/demo-receiver.js'], ALL_LIBS) },
  { files: ['src/version.ts'], rules: onlyImports(0, [], ALL_LIBS) },
  { files: ['src/cli.ts'], rules: onlyImports(0, ['gateway.js', 'version.js', 'demo/demo.js', 'cli', 'cli/*', 'config', 'config/*', 'spool', 'spool/*', 'core', 'core/*'], ALL_LIBS) },
  { files: ['src/cli/*.ts'], rules: onlyImports(1, ['config', 'config/*', 'spool', 'spool/**', 'core', 'core/*'], ALL_LIBS) },
);
