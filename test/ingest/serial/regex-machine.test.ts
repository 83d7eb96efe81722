/**
 * The regex machine that tells whether a regex frame is complete: known cases, the syntax it
 * leaves to the fallback, and a differential test against the JavaScript engine itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRegexMachine } from '../../../src/ingest/serial/regex-machine.js';

describe('regex machine: when a regex frame is complete', () => {
  const decide = (pattern: string, text: string, from = 0): unknown => compileRegexMachine(pattern)!.decide(text, from);

  it('final once no byte can change the match; open while one could', () => {
    assert.deepEqual(decide('T=\\d+;', 'xxT=12;'), { kind: 'final', index: 2, end: 7 });
    assert.deepEqual(decide('T=\\d+', 'T=12'), { kind: 'open', liveFrom: 0 });
    assert.deepEqual(decide('T=\\d+', 'T=12 '), { kind: 'final', index: 0, end: 4 });
    assert.deepEqual(decide('<.*?>', '<a>'), { kind: 'final', index: 0, end: 3 }, 'lazy: more bytes would not change it');
    assert.deepEqual(decide('<.*>', '<a>'), { kind: 'open', liveFrom: 0 }, 'greedy: <a>b> would be the match');
    assert.deepEqual(decide('ab|a', 'a'), { kind: 'open', liveFrom: 0 });
    assert.deepEqual(decide('a|ab', 'a'), { kind: 'final', index: 0, end: 1 }, 'the first alternative wins in JavaScript');
    assert.deepEqual(decide('x\\d+;|\\d+', 'x12 3'), { kind: 'final', index: 1, end: 3 }, 'x12 cannot become x12; any more: the 12');
    assert.deepEqual(decide('x\\d+;|\\d', 'x12'), { kind: 'open', liveFrom: 0 }, 'x12; would start earlier than the 1');
    assert.deepEqual(decide('T=\\d+;', ' zz'), { kind: 'open', liveFrom: 3 }, 'nothing in progress: only a match starting later');
  });

  it('patterns outside the modelled syntax are left to the fallback', () => {
    for (const pattern of ['^T', 'T$', '\\bT', '(?=T)T', '(a)\\1', 'a*', 'x|', '(a?)*b', '\\cJ', '\\p{L}', 'a{2,1}', '(?<=a)b']) {
      assert.equal(compileRegexMachine(pattern), undefined, pattern);
    }
    for (const pattern of ['T=\\d+;', '[^\\]]+]', '(?<v>\\w+)=(\\d{1,3})', '\\{[^}]*}', '[\\x00-\\x1f]', 'a{2}', '[-a]b', '\\/\\-']) {
      assert.notEqual(compileRegexMachine(pattern), undefined, pattern);
    }
  });

  it('agrees with JavaScript: a final match is what RegExp.exec finds, and no appended bytes change it (random patterns, fixed seeds)', () => {
    for (const seed of [1, 2, 3]) {
      const failure = differential(seed, 1500);
      assert.equal(failure, undefined, `seed ${seed}: ${failure}`);
    }
  });
});

/** Random patterns of the modelled syntax against random texts; the first disagreement with the JavaScript engine, if any. */
function differential(seed: number, patterns: number): string | undefined {
  let state = seed >>> 0;
  const random = (): number => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const atom = (depth: number): string => {
    const r = random();
    if (depth > 2 || r < 0.5) return pick(['a', 'b', ';', '\\d', '[ab]', '[^;]', '.', '\\.', '1', '[a-b1]', '\\w', '\\s', '\\x3b']);
    return (r < 0.75 ? '(' : '(?:') + alternation(depth + 1) + ')';
  };
  const quantifier = (): string => pick(['', '', '', '*', '+', '?', '*?', '+?', '??', '{2}', '{1,2}', '{0,}', '{1,3}?']);
  const sequence = (depth: number): string => Array.from({ length: 1 + Math.floor(random() * 3) }, () => atom(depth) + quantifier()).join('');
  const alternation = (depth: number): string => (random() < 0.25 ? `${sequence(depth)}|${sequence(depth)}` : sequence(depth));
  const text = (n: number): string => Array.from({ length: n }, () => pick(['a', 'b', ';', '1', '2', '.', '\n'])).join('');
  let finals = 0;
  for (let i = 0; i < patterns; i++) {
    const pattern = alternation(0);
    const machine = compileRegexMachine(pattern);
    if (machine === undefined) continue;
    const re = new RegExp(pattern, 'g');
    for (let k = 0; k < 8; k++) {
      const input = text(Math.floor(random() * 8));
      const from = Math.floor(random() * (input.length + 1));
      const decision = machine.decide(input, from);
      re.lastIndex = from;
      const js = re.exec(input);
      const where = `/${pattern}/ on ${JSON.stringify(input)} from ${from}: ${JSON.stringify(decision)}`;
      if (decision.kind === 'none' && js !== null) return `${where}, but JavaScript matched ${JSON.stringify(js[0])} at ${js.index}`;
      if (decision.kind !== 'final') continue;
      finals += 1;
      if (js === null || js.index !== decision.index || js.index + js[0].length !== decision.end) {
        return `${where}, but JavaScript found ${JSON.stringify(js && [js.index, js[0]])}`;
      }
      for (let e = 0; e < 20; e++) {
        const longer = input + text(1 + Math.floor(random() * 5));
        re.lastIndex = from;
        const again = re.exec(longer);
        if (again === null || again.index !== decision.index || again[0].length !== decision.end - decision.index) {
          return `${where}, but on ${JSON.stringify(longer)} JavaScript found ${JSON.stringify(again && [again.index, again[0]])}`;
        }
      }
    }
  }
  // The check has teeth only if enough answers were final.
  return finals < patterns / 4 ? `only ${finals} final answers` : undefined;
}
