/**
 * What a client error from aedes means, so it is counted and logged once, at the right level.
 *
 * aedes closes a client on any error passed to a handler callback and then emits `clientError`
 * (or `connectionError` before the client has an id) with it. Errors we raise ourselves are
 * `Refusal`s and were counted and logged where they were raised. The rest are protocol
 * violations from the parser or aedes' checks (`malformed`), time-outs, or the socket going away.
 */
import { GatewayError } from '../../core/errors.js';

/**
 * Why we closed a client's connection; counted and logged where it was raised. With a
 * `returnCode`, it refuses a CONNECT: aedes sends that code in the CONNACK, then closes.
 */
export class Refusal extends Error {
  readonly reason: string;
  readonly returnCode: number | undefined;

  constructor(reason: string, message: string, returnCode?: 2 | 3 | 4 | 5) {
    super(message);
    this.name = 'Refusal';
    this.reason = reason;
    this.returnCode = returnCode;
  }
}

export type ClientErrorKind =
  /** Ours, or a consequence of a close already handled: nothing more to say. */
  | 'handled'
  /** The connection went away or timed out: worth a debug line. */
  | 'gone'
  /** A protocol violation: count as `malformed`, log at a limited rate. */
  | 'malformed';

const GONE = [
  'keep alive timeout', 'connect did not arrive in time', 'drain timeout', 'connection closed', 'Client queue limit reached',
];

export function classifyClientError(err: Error & { code?: unknown }, clientClosed: boolean): ClientErrorKind {
  if (err instanceof Refusal) return 'handled';
  // A spool failure: logged by the append path; the client is closed so that it sends again.
  if (err instanceof GatewayError) return 'handled';
  // A socket error (ECONNRESET, EPIPE, ...), or a write after the client was closed.
  if (typeof err.code === 'string' || clientClosed) return 'gone';
  if (GONE.some((message) => err.message.startsWith(message))) return 'gone';
  return 'malformed';
}
