// The part of the optional native package `unix-dgram` (it ships no types) that sd-notify.ts uses.
declare module 'unix-dgram' {
  export interface UnixDgramSocket {
    /** Calls `callback` synchronously: with an error (errno as `code`; 1 = congestion) or none. */
    send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error & { code?: number }) => void): void;
    on(event: 'error', listener: (err: Error) => void): this;
    close(): void;
  }
  export function createSocket(type: 'unix_dgram'): UnixDgramSocket;
}
