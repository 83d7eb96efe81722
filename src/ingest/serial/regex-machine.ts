/**
 * Whether a regex frame is complete: could more bytes still change the match JavaScript found?
 *
 * `T=\d+;` matched on "T=12;" is final: no byte can change it. `T=\d+` on "T=12" is not: "3"
 * would make it "T=123". JavaScript has no way to ask (Java's `Matcher.hitEnd`), so the pattern
 * is compiled here to a small Pike VM (Thompson NFA with thread priorities): it keeps JavaScript's
 * leftmost-first choice, and a match is final once no thread that JavaScript would prefer is still
 * alive. When the text ends while such a thread waits for another byte, the match is open.
 *
 * Only a subset of the syntax is modelled (literals, `.`, classes and their escapes, groups,
 * alternation, greedy and lazy quantifiers). Anything else (anchors, `\b`, lookaround,
 * back-references, a pattern that matches the empty string) gives `undefined` from
 * `compileRegexMachine`, and the framer falls back to treating a match that reaches the end of
 * the bytes as open. Text is latin1, one byte a character, as the framer matches it.
 */

/** 256 entries, 1 for a member byte. */
type ByteSet = Uint8Array;

type Node =
  | { kind: 'set'; set: ByteSet }
  | { kind: 'seq'; items: Node[] }
  | { kind: 'alt'; options: Node[] }
  | { kind: 'repeat'; node: Node; min: number; max: number; lazy: boolean };

type Inst =
  | { op: 'byte'; set: ByteSet }
  | { op: 'split'; first: number; second: number }
  | { op: 'jump'; to: number }
  | { op: 'match' };

/** A program larger than this (counted repetition expands) is not modelled. */
const MAX_PROGRAM = 10_000;

class Unsupported extends Error {}

function setOf(...codes: number[]): ByteSet {
  const set = new Uint8Array(256);
  for (const code of codes) if (code < 256) set[code] = 1;
  return set;
}

function range(from: number, to: number): ByteSet {
  const set = new Uint8Array(256);
  for (let c = from; c <= Math.min(to, 255); c++) set[c] = 1;
  return set;
}

function union(target: ByteSet, source: ByteSet): void {
  for (let c = 0; c < 256; c++) if (source[c] === 1) target[c] = 1;
}

function complement(set: ByteSet): ByteSet {
  const out = new Uint8Array(256);
  for (let c = 0; c < 256; c++) out[c] = set[c] === 1 ? 0 : 1;
  return out;
}

const DIGIT = range(0x30, 0x39);
const WORD = (() => {
  const set = range(0x30, 0x39);
  union(set, range(0x41, 0x5a));
  union(set, range(0x61, 0x7a));
  set[0x5f] = 1;
  return set;
})();
/** JavaScript's \s within latin1: \t \n \v \f \r, space, no-break space. */
const SPACE = (() => {
  const set = range(0x09, 0x0d);
  set[0x20] = 1;
  set[0xa0] = 1;
  return set;
})();
/** `.` without the s flag: all but the line terminators (\n, \r; U+2028/9 are not latin1). */
const DOT = complement(setOf(0x0a, 0x0d));

const CLASS_ESCAPES: Record<string, ByteSet> = {
  d: DIGIT, D: complement(DIGIT), w: WORD, W: complement(WORD), s: SPACE, S: complement(SPACE),
};
const CONTROL_ESCAPES: Record<string, number> = { t: 0x09, n: 0x0a, v: 0x0b, f: 0x0c, r: 0x0d };

class Parser {
  readonly #src: string;
  #pos = 0;

  constructor(src: string) {
    this.#src = src;
  }

  parse(): Node {
    const node = this.#alternation();
    if (this.#pos !== this.#src.length) throw new Unsupported('unbalanced )');
    return node;
  }

  #peek(offset = 0): string | undefined {
    return this.#src[this.#pos + offset];
  }

  #alternation(): Node {
    const options = [this.#sequence()];
    while (this.#peek() === '|') {
      this.#pos += 1;
      options.push(this.#sequence());
    }
    return options.length === 1 ? options[0]! : { kind: 'alt', options };
  }

  #sequence(): Node {
    const items: Node[] = [];
    for (let c = this.#peek(); c !== undefined && c !== '|' && c !== ')'; c = this.#peek()) {
      const atom = this.#atom();
      const quantified = this.#quantifier(atom);
      if (quantified !== atom && this.#quantifierAhead()) throw new Unsupported('a quantifier after a quantifier');
      items.push(quantified);
    }
    return { kind: 'seq', items };
  }

  #atom(): Node {
    const c = this.#peek()!;
    this.#pos += 1;
    switch (c) {
      case '(': {
        if (this.#peek() === '?') {
          if (this.#peek(1) === ':') this.#pos += 2;
          else if (this.#peek(1) === '<' && this.#peek(2) !== '=' && this.#peek(2) !== '!') {
            const close = this.#src.indexOf('>', this.#pos);
            if (close < 0) throw new Unsupported('group name');
            this.#pos = close + 1;
          } else throw new Unsupported('lookaround');
        }
        const node = this.#alternation();
        if (this.#peek() !== ')') throw new Unsupported('unclosed group');
        this.#pos += 1;
        return node;
      }
      case '[': return { kind: 'set', set: this.#class() };
      case '.': return { kind: 'set', set: DOT };
      case '\\': return { kind: 'set', set: this.#escapedSet() };
      case '^': case '$': throw new Unsupported('anchor');
      case '*': case '+': case '?': throw new Unsupported('nothing to repeat');
      case '{':
        this.#pos -= 1;
        if (this.#braces() !== undefined) throw new Unsupported('nothing to repeat');
        this.#pos += 1;
        return { kind: 'set', set: setOf(0x7b) };
      default: return { kind: 'set', set: setOf(c.charCodeAt(0)) };
    }
  }

  #quantifierAhead(): boolean {
    const c = this.#peek();
    if (c === '*' || c === '+' || c === '?') return true;
    if (c !== '{') return false;
    const at = this.#pos;
    const found = this.#braces() !== undefined;
    this.#pos = at;
    return found;
  }

  /** `{n}`, `{n,}` or `{n,m}` at the position: consumed and returned; otherwise nothing moves. */
  #braces(): { min: number; max: number } | undefined {
    const match = /^\{(\d+)(,(\d*))?\}/.exec(this.#src.slice(this.#pos));
    if (match === null) return undefined;
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === '' ? Infinity : Number(match[3]);
    this.#pos += match[0].length;
    return { min, max };
  }

  #quantifier(node: Node): Node {
    const c = this.#peek();
    let bounds: { min: number; max: number } | undefined;
    if (c === '*') bounds = { min: 0, max: Infinity };
    else if (c === '+') bounds = { min: 1, max: Infinity };
    else if (c === '?') bounds = { min: 0, max: 1 };
    if (bounds !== undefined) this.#pos += 1;
    else if (c === '{') bounds = this.#braces();
    if (bounds === undefined) return node;
    if (bounds.max < bounds.min) throw new Unsupported('numbers out of order');
    const lazy = this.#peek() === '?';
    if (lazy) this.#pos += 1;
    return { kind: 'repeat', node, min: bounds.min, max: bounds.max, lazy };
  }

  #class(): ByteSet {
    const negated = this.#peek() === '^';
    if (negated) this.#pos += 1;
    const set = new Uint8Array(256);
    // `[]` matches nothing and `[^]` anything, as in JavaScript.
    while (this.#peek() !== ']') {
      if (this.#peek() === undefined) throw new Unsupported('unclosed class');
      const from = this.#classAtom();
      if (this.#peek() === '-' && this.#peek(1) !== ']' && this.#peek(1) !== undefined) {
        this.#pos += 1;
        const to = this.#classAtom();
        if (typeof from !== 'number' || typeof to !== 'number' || to < from) throw new Unsupported('class range');
        union(set, range(from, to));
      } else if (typeof from === 'number') {
        union(set, setOf(from));
      } else {
        union(set, from);
      }
    }
    this.#pos += 1;
    return negated ? complement(set) : set;
  }

  /** One character (its code) or a class escape (its set). */
  #classAtom(): number | ByteSet {
    const c = this.#peek()!;
    this.#pos += 1;
    if (c !== '\\') return c.charCodeAt(0);
    if (this.#peek() === 'b') {
      this.#pos += 1;
      return 0x08;
    }
    return this.#escape();
  }

  #escapedSet(): ByteSet {
    const escaped = this.#escape();
    return typeof escaped === 'number' ? setOf(escaped) : escaped;
  }

  /** After a backslash: a character code (a code above 255 matches no byte) or a class escape's set. */
  #escape(): number | ByteSet {
    const c = this.#peek();
    if (c === undefined) throw new Unsupported('trailing backslash');
    this.#pos += 1;
    const classSet = CLASS_ESCAPES[c];
    if (classSet !== undefined) return classSet;
    const control = CONTROL_ESCAPES[c];
    if (control !== undefined) return control;
    if (c === '0' && !/[0-9]/.test(this.#peek() ?? '')) return 0;
    if (c === 'x' || c === 'u') {
      const digits = c === 'x' ? 2 : 4;
      const hex = this.#src.slice(this.#pos, this.#pos + digits);
      if (!new RegExp(`^[0-9A-Fa-f]{${digits}}$`).test(hex)) throw new Unsupported(`\\${c} without hex digits`);
      this.#pos += digits;
      return parseInt(hex, 16);
    }
    // Punctuation stands for itself. Letters and digits left: \b \B (assertions),
    // back-references and octal escapes, \c, \k, \p, and identity escapes such as \e.
    if (/[A-Za-z0-9]/.test(c)) throw new Unsupported(`\\${c}`);
    return c.charCodeAt(0);
  }
}

function nullable(node: Node): boolean {
  switch (node.kind) {
    case 'set': return false;
    case 'seq': return node.items.every(nullable);
    case 'alt': return node.options.some(nullable);
    case 'repeat': return node.min === 0 || nullable(node.node);
  }
}

class Compiler {
  readonly program: Inst[] = [];

  #emit(inst: Inst): number {
    if (this.program.length >= MAX_PROGRAM) throw new Unsupported('too large');
    this.program.push(inst);
    return this.program.length - 1;
  }

  compile(node: Node): void {
    switch (node.kind) {
      case 'set':
        this.#emit({ op: 'byte', set: node.set });
        return;
      case 'seq':
        for (const item of node.items) this.compile(item);
        return;
      case 'alt': {
        const jumps: number[] = [];
        node.options.forEach((option, i) => {
          if (i === node.options.length - 1) {
            this.compile(option);
            return;
          }
          const split = this.#emit({ op: 'split', first: 0, second: 0 });
          this.compile(option);
          jumps.push(this.#emit({ op: 'jump', to: 0 }));
          this.program[split] = { op: 'split', first: split + 1, second: this.program.length };
        });
        for (const jump of jumps) this.program[jump] = { op: 'jump', to: this.program.length };
        return;
      }
      case 'repeat': {
        // JavaScript ends a round that matched nothing (`(a?)*`) in ways this machine does not follow.
        if (node.max > node.min && nullable(node.node)) throw new Unsupported('a repeated part that can match nothing');
        for (let i = 0; i < node.min; i++) this.compile(node.node);
        if (node.max === Infinity) {
          const split = this.#emit({ op: 'split', first: 0, second: 0 });
          this.compile(node.node);
          this.#emit({ op: 'jump', to: split });
          this.#split(split, split + 1, this.program.length, node.lazy);
          return;
        }
        const splits: number[] = [];
        for (let i = node.min; i < node.max; i++) {
          splits.push(this.#emit({ op: 'split', first: 0, second: 0 }));
          this.compile(node.node);
        }
        for (const split of splits) this.#split(split, split + 1, this.program.length, node.lazy);
        return;
      }
    }
  }

  /** Greedy prefers another round (`body`), lazy prefers leaving (`out`). */
  #split(at: number, body: number, out: number, lazy: boolean): void {
    this.program[at] = lazy ? { op: 'split', first: out, second: body } : { op: 'split', first: body, second: out };
  }
}

export type Decision =
  /** This match cannot change, whatever bytes follow. */
  | { kind: 'final'; index: number; end: number }
  /**
   * More bytes could change the answer. `liveFrom`: where the earliest match still in progress
   * started (text.length when none has consumed a byte yet).
   */
  | { kind: 'open'; liveFrom: number }
  /** No match, and none in progress (cannot happen for a pattern that can match at all). */
  | { kind: 'none' };

interface Thread {
  pc: number;
  start: number;
}

export class RegexMachine {
  readonly #program: Inst[];
  /** Generation stamps per instruction: a thread is added to a list at most once. */
  readonly #seen: Uint32Array;
  #generation = 0;

  constructor(program: Inst[]) {
    this.#program = program;
    this.#seen = new Uint32Array(program.length);
  }

  /**
   * Leftmost-first search in `text` from `from`, as `RegExp.prototype.exec` with lastIndex
   * `from` would do it, stopping as soon as the answer is certain.
   */
  decide(text: string, from: number): Decision {
    let current: Thread[] = [];
    let matched: { index: number; end: number } | undefined;
    this.#generation += 1;
    for (let pos = from; ; pos++) {
      // A match starting here has the lowest priority; none is tried once one was found.
      if (matched === undefined) this.#add(current, 0, pos);
      const atEnd = pos === text.length;
      const code = atEnd ? -1 : text.charCodeAt(pos);
      const next: Thread[] = [];
      this.#generation += 1;
      let liveFrom: number | undefined;
      for (const thread of current) {
        const inst = this.#program[thread.pc]!;
        if (inst.op === 'match') {
          // Every thread after this one is one JavaScript would try only if this one failed.
          matched = { index: thread.start, end: pos };
          break;
        }
        if (inst.op !== 'byte') continue;
        if (atEnd) liveFrom = Math.min(liveFrom ?? pos, thread.start);
        else if (inst.set[code] === 1) this.#add(next, thread.pc + 1, thread.start);
      }
      if (atEnd) {
        if (liveFrom !== undefined) return { kind: 'open', liveFrom };
        return matched === undefined ? { kind: 'none' } : { kind: 'final', ...matched };
      }
      current = next;
      if (current.length === 0 && matched !== undefined) return { kind: 'final', ...matched };
    }
  }

  /** Adds the thread at `pc` and everything reachable without reading a byte, in priority order. */
  #add(list: Thread[], pc: number, start: number): void {
    const stack = [pc];
    while (stack.length > 0) {
      const at = stack.pop()!;
      if (this.#seen[at] === this.#generation) continue;
      this.#seen[at] = this.#generation;
      const inst = this.#program[at]!;
      if (inst.op === 'jump') stack.push(inst.to);
      else if (inst.op === 'split') stack.push(inst.second, inst.first);
      else list.push({ pc: at, start });
    }
  }

  /** True when the empty string matches (such patterns are not modelled). */
  matchesEmpty(): boolean {
    const list: Thread[] = [];
    this.#generation += 1;
    this.#add(list, 0, 0);
    return list.some((thread) => this.#program[thread.pc]!.op === 'match');
  }
}

/** The machine for `pattern` (flags: none but g), or undefined when the pattern is outside the modelled subset. */
export function compileRegexMachine(pattern: string): RegexMachine | undefined {
  try {
    const compiler = new Compiler();
    compiler.compile(new Parser(pattern).parse());
    compiler.program.push({ op: 'match' });
    const machine = new RegexMachine(compiler.program);
    return machine.matchesEmpty() ? undefined : machine;
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}
