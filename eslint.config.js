// Lint rules, including the module boundaries of DESIGN.md: which folder of src/ may import which.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `no-restricted-imports` patterns: everything outside the folder is forbidden except `allowed`. */
function onlyImports(depth, allowed, libraries = []) {
  const up = depth === 0 ? './' : '../'.repeat(depth);
  return {
    'no-restricted-imports': ['error', {
      patterns: [
        { group: [`${up}*`, ...allowed.map((a) => `!${up}${a}`)], message: 'DESIGN.md: this module may not import that one' },
        ...(libraries.length > 0 ? [{ group: libraries, message: 'DESIGN.md: only one module talks to this library' }] : []),
      ],
    }],
  };
}

const ONLY_UPSTREAM = ['rhea', 'rhea/*'];
const ONLY_SPOOL = ['better-sqlite3'];
const ONLY_MQTT = ['aedes', 'aedes/*'];
const ONLY_SERIAL = ['serialport', '@serialport/*'];
const ALL_LIBS = [...ONLY_UPSTREAM, ...ONLY_SPOOL, ...ONLY_MQTT, ...ONLY_SERIAL];
const without = (libs) => ALL_LIBS.filter((l) => !libs.includes(l));

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
  { files: ['src/core/**/*.ts'], rules: onlyImports(1, ['core', 'core/*'], ALL_LIBS) },
  { files: ['src/config/**/*.ts'], rules: onlyImports(1, ['core', 'core/*'], ALL_LIBS) },
  { files: ['src/route/**/*.ts'], rules: onlyImports(1, ['core', 'core/*'], ALL_LIBS) },
  { files: ['src/ops/**/*.ts'], rules: onlyImports(1, ['core', 'core/*'], ALL_LIBS) },
  { files: ['src/spool/**/*.ts'], rules: onlyImports(1, ['core', 'core/*'], without(ONLY_SPOOL)) },
  { files: ['src/upstream/*.ts'], rules: onlyImports(1, ['core', 'core/*'], ALL_LIBS) },
  { files: ['src/upstream/amqp/**/*.ts'], rules: onlyImports(2, ['core', 'core/*', 'upstream/interface.js'], without(ONLY_UPSTREAM)) },
  { files: ['src/forward/**/*.ts'], rules: onlyImports(1, ['core', 'core/*', 'spool/interface.js', 'upstream/interface.js'], ALL_LIBS) },
  { files: ['src/ingest/*.ts'], rules: onlyImports(1, ['core', 'core/*', 'spool/interface.js', 'route', 'route/*'], ALL_LIBS) },
  { files: ['src/ingest/mqtt/**/*.ts'], rules: onlyImports(2, ['core', 'core/*', 'route', 'route/*', 'spool/interface.js', 'ingest/interface.js'], without(ONLY_MQTT)) },
  { files: ['src/ingest/serial/**/*.ts'], rules: onlyImports(2, ['core', 'core/*', 'route', 'route/*', 'spool/interface.js', 'ingest/interface.js'], without(ONLY_SERIAL)) },
  { files: ['src/node-red/**/*.ts'], rules: onlyImports(1, ['core', 'core/*', 'config', 'config/*', 'route', 'route/*', 'spool', 'spool/*', 'forward', 'forward/*', 'upstream', 'upstream/**', 'ops', 'ops/*'], [...ONLY_MQTT, ...ONLY_SERIAL]) },
  { files: ['src/cli.ts'], rules: onlyImports(0, ['gateway.js', 'config', 'config/*', 'spool', 'spool/*', 'core', 'core/*'], ALL_LIBS) },
);
