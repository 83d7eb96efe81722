/**
 * A private RabbitMQ 4 node (native AMQP 1.0) for integration tests, run from a Debian 13 root:
 * this machine is Debian 12, whose RabbitMQ is 3.10. scripts/peers/debian13-rabbitmq.sh builds the
 * root once into a cache directory ($UPLINK_PEER_CACHE, default /var/cache/uplink-peers) and later
 * runs reuse it. The node is the same as the 3.10 peer's (test/peers/rabbitmq.ts: free loopback
 * ports, TLS with client certificates required, SASL EXTERNAL with the CN, PLAIN when asked); only
 * its programs run inside the root.
 *
 * Each program (epmd, rabbitmq-server, every rabbitmqctl) runs in a mount namespace of its own, in
 * which the node's directory is bind-mounted on the root's /peer and /proc is mounted: several
 * nodes share one root without seeing each other's files, and nothing stays mounted on the host
 * when they exit. Needs root (unshare, mount, chroot).
 */
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRabbitMqNode, type NodeRuntime, type RabbitMqOptions, type RabbitMqPeer } from './rabbitmq.js';

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/peers/debian13-rabbitmq.sh', import.meta.url));
/** A cold build (debootstrap + rabbitmq-server) took about a minute here; a slow mirror takes longer. */
const BUILD_TIMEOUT_MS = 20 * 60_000;
const BIN_DIR = '/usr/lib/rabbitmq/bin';

/** Where the node's directory appears inside the root (the build script makes it). */
const MOUNT_POINT = '/peer';
/** Runs "$@" chrooted into $1 with $2 bind-mounted on $1/peer, inside the caller's new mount namespace. */
const IN_ROOT = 'root=$1; dir=$2; shift 2; ' +
  `mount --bind "$dir" "$root${MOUNT_POINT}" && mount -t proc proc "$root/proc" && exec chroot "$root" "$@"`;

/** Builds the Debian 13 root if the cache has none, and resolves with its path. */
export async function debian13Root(): Promise<string> {
  const output = await new Promise<string>((resolve, reject) => {
    execFile('bash', [BUILD_SCRIPT], { timeout: BUILD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`RabbitMQ 4 test peer: ${BUILD_SCRIPT} failed: ${error.message}\n${stderr.slice(-4000)}`));
        else resolve(stdout);
      });
  });
  const root = output.trim().split('\n').at(-1) ?? '';
  await access(join(root, BIN_DIR, 'rabbitmq-server'));
  return root;
}

/** RabbitMQ 4's version inside the root (Debian's package version, e.g. `4.0.5-6+deb13u2`). */
export async function rabbitMq4Version(root: string): Promise<string> {
  return (await readFile(join(root, '.rabbitmq-version'), 'utf8')).trim();
}

export function chrootRuntime(root: string, version: string): NodeRuntime {
  return {
    product: `RabbitMQ ${version.split('.').slice(0, 2).join('.')}`,
    binDir: BIN_DIR,
    path: () => MOUNT_POINT,
    command: (dir, program, args) => ({
      file: 'unshare',
      args: ['--mount', '--propagation', 'private', 'sh', '-c', IN_ROOT, 'uplink-peer-root', root, dir, program, ...args],
    }),
    // AMQP 1.0 is in the core since 4.0 (rabbitmq_amqp1_0 is an empty shim there).
    plugins: ['rabbitmq_auth_mechanism_ssl'],
    // 4.x logs ANONYMOUS and no-SASL clients in as this user (guest by default); 3.x's
    // amqp1_0.default_user is gone and an unknown key stops the boot.
    config: ['anonymous_login_user = none'],
  };
}

/** Creates and starts a private RabbitMQ 4 node; builds the root first when the cache has none. */
export async function startRabbitMq4(options: Omit<RabbitMqOptions, 'binDir'>): Promise<RabbitMqPeer> {
  const root = await debian13Root();
  return startRabbitMqNode(options, chrootRuntime(root, await rabbitMq4Version(root)));
}
