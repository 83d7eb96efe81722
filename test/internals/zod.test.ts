/**
 * The private part of zod that src/config/suggest.ts reads: a schema's `_zod.def`, walked to find
 * the keys allowed at a path of the config (for "did you mean" in an unknown-key message).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { z } from 'zod';
import { keysAt } from '../../src/config/suggest.js';
import { internal, versions } from './internal.js';

type Def = { type: string; innerType?: unknown; element?: unknown; shape?: Record<string, unknown>; in?: unknown };
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

describe('zod internals', () => {
  test('zod is pinned: package.json names the exact version installed', () => {
    const { installed, wanted } = versions('zod');
    assert.equal(wanted, installed, 'src/config/suggest.ts reads zod internals: pin zod exactly and rerun test/internals on an upgrade');
  });

  test('_zod.def: objects have `shape`, arrays `element`, wrappers `innerType`, pipes and transforms `in`', async () => {
    await internal('zod', 'ZodType._zod.def (type, shape, element, innerType, in)', 'src/config/suggest.ts keysAt()', () => {
      const inner = z.object({ a: z.string() });
      const object = defOf(inner);
      assert.equal(object.type, 'object');
      assert.deepEqual(Object.keys(object.shape ?? {}), ['a'], 'an object schema has no `shape` of its keys');
      assert.ok(defOf(z.array(inner)).element === inner, 'an array schema has no `element`');
      for (const [name, wrapped] of [
        ['optional', inner.optional()], ['default', inner.default({ a: 'x' })], ['prefault', inner.prefault({ a: 'x' })], ['nullable', inner.nullable()],
      ] as const) {
        assert.ok(defOf(wrapped).innerType === inner, `.${name}() has no \`innerType\``);
        assert.equal(defOf(wrapped).in, undefined);
      }
      for (const [name, piped] of [['transform', inner.transform((v) => v)], ['pipe', inner.pipe(z.any())]] as const) {
        assert.ok(defOf(piped).in === inner, `.${name}() has no \`in\``);
      }
    });
  });

  test('keysAt finds the keys of the config schema through its wrappers', async () => {
    await internal('zod', 'ZodType._zod.def, walked over the config schema', 'src/config/suggest.ts keysAt()', () => {
      assert.ok(keysAt([]).includes('mqtt') && keysAt([]).includes('routes'), `top level: ${keysAt([]).join(', ')}`);
      assert.ok(keysAt(['mqtt']).includes('maxPayload'), `mqtt: ${keysAt(['mqtt']).join(', ')}`);
      assert.ok(keysAt(['routes', 0]).includes('address'), `routes[0]: ${keysAt(['routes', 0]).join(', ')}`);
      assert.ok(keysAt(['upstream', 'tls']).includes('cert'), `upstream.tls: ${keysAt(['upstream', 'tls']).join(', ')}`);
    });
  });
});
