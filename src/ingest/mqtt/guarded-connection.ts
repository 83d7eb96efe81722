/**
 * The stream aedes reads a client from: the socket (TCP, TLS or a WebSocket stream), with every
 * chunk passed through a FrameGuard first. A chunk that breaks a limit is never passed on: the
 * connection is closed and `onProblem` says why. Reads stop while aedes is busy (backpressure
 * reaches the socket, so a held-back device waits in its TCP window, not in our memory).
 */
import { Duplex } from 'node:stream';
import type { FrameGuard, FrameProblem } from './frame-guard.js';

export type Transport = 'tcp' | 'tls' | 'ws';

/** Who is on the other end, for logs, auth and ACLs. */
export interface ConnectionInfo {
  /** Unique per connection in this process. */
  id: number;
  transport: Transport;
  remoteAddress: string;
  remotePort: number | undefined;
  /** The CN of a verified TLS client certificate. */
  certCn?: string;
}

export class GuardedConnection extends Duplex {
  readonly info: ConnectionInfo;
  readonly #inner: Duplex;

  constructor(inner: Duplex, info: ConnectionInfo, guard: FrameGuard, onProblem: (problem: FrameProblem) => void) {
    super({ allowHalfOpen: false });
    this.info = info;
    this.#inner = inner;
    inner.on('data', (chunk: Buffer) => {
      if (this.destroyed) return;
      const problem = guard.check(chunk);
      if (problem !== undefined) {
        onProblem(problem);
        this.destroy();
        return;
      }
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#inner.write(chunk)) callback();
    else this.#afterDrain(callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const inner = this.#inner;
    inner.cork();
    let ok = true;
    for (const { chunk } of chunks) ok = inner.write(chunk);
    inner.uncork();
    if (ok) callback();
    else this.#afterDrain(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#inner.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#inner.destroy();
    callback(error);
  }

  #afterDrain(callback: (error?: Error | null) => void): void {
    const inner = this.#inner;
    const done = (): void => {
      inner.off('drain', done);
      inner.off('close', done);
      callback();
    };
    inner.on('drain', done);
    inner.on('close', done);
  }
}
