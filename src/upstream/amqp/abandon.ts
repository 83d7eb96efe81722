import type { Connection } from 'rhea';

/**
 * Drops a connection that will not close by itself. rhea runs its disconnect path (clearing its
 * heartbeat timers, emitting `disconnected`) only on the socket's 'end', which a destroyed socket
 * never emits; so after destroying the socket, run that path as rhea would.
 */
export function abandon(connection: Connection): void {
  const internals = connection as unknown as { socket?: { destroy(): void; destroyed?: boolean }; eof?: (error?: unknown) => void };
  if (internals.socket?.destroyed === true) return;
  internals.socket?.destroy();
  internals.eof?.({ code: 'ETIMEDOUT', message: 'connection abandoned' });
}
