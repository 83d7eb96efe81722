import type { Connection } from 'rhea';

/** rhea internals (lib/connection.js): the socket, its end-of-stream path and the heartbeat timers. */
interface ConnectionInternals {
  socket?: { destroy(): void; destroyed?: boolean };
  eof?: (error?: unknown) => void;
  heartbeat_in?: NodeJS.Timeout;
  heartbeat_out?: NodeJS.Timeout;
}

/**
 * Drops a connection that will not close by itself. rhea runs its disconnect path (clearing its
 * heartbeat timers, emitting `disconnected`) only on the socket's 'end', which a destroyed socket
 * never emits; so after destroying the socket, run that path as rhea would.
 *
 * Called from inside rhea's input handler (an event of the frame being read, such as the
 * broker's close), the handler arms its idle timer again after we return (connection.js, input):
 * a timer of 2 x idle_time_out on a connection that is gone, which keeps the process alive after
 * stop. So the timers are cleared once more, after the handler.
 */
export function abandon(connection: Connection): void {
  const internals = connection as unknown as ConnectionInternals;
  if (internals.socket?.destroyed !== true) {
    internals.socket?.destroy();
    internals.eof?.({ code: 'ETIMEDOUT', message: 'connection abandoned' });
  }
  setImmediate(() => {
    clearTimeout(internals.heartbeat_in);
    clearTimeout(internals.heartbeat_out);
    internals.heartbeat_in = undefined;
    internals.heartbeat_out = undefined;
  });
}
