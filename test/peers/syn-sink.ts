/**
 * A TCP port where connection attempts hang: a listener (Python, which can listen without ever
 * accepting) with a backlog of 0 whose one queue place is taken. The kernel drops further SYNs,
 * so a connect() neither succeeds nor fails: only the client's own timeout ends it, as with a
 * host that is down behind a router that drops packets.
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const SCRIPT = `
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

export interface SynSink {
  port: number;
  stop(): Promise<void>;
}

export async function startSynSink(): Promise<SynSink> {
  const child = spawn('/usr/bin/python3', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(Number(line)));
    void exited.then(() => reject(new Error('the SYN sink exited before it listened')));
  });
  // The one place in the accept queue.
  const filler: Socket = connect(port, '127.0.0.1');
  filler.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    filler.once('connect', () => resolve());
    filler.once('error', reject);
  });
  return {
    port,
    stop: async () => {
      filler.destroy();
      child.kill('SIGKILL');
      await exited;
    },
  };
}
