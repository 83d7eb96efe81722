/**
 * A private Apache ActiveMQ Classic 5.17 broker (Debian's `activemq`) for integration tests: AMQP
 * 1.0 over TLS only (`amqp+ssl`), client certificates required, SASL PLAIN against the broker's
 * own user list (ActiveMQ has no EXTERNAL). Its own config, data and logs in `dir`, on a free
 * loopback port; started as a child process and stopped by its PID (SIGTERM, then SIGKILL).
 *
 * Debian builds ActiveMQ without its AMQP module (activemq-amqp needs Qpid Proton-J, which Debian
 * does not package; see /usr/share/doc/libactivemq-java/README.Debian). The module's jars must be
 * added: a folder holding activemq-amqp-5.17.x.jar and proton-j-0.33.x.jar (Apache's own ActiveMQ
 * 5.17 distribution has both in lib/optional), given as `amqpLib`, or $UPLINK_ACTIVEMQ_AMQP_LIB.
 * Without them the broker cannot listen for AMQP and this peer throws (never skips). Neither jar
 * can be had from Debian or npm, the only sources CI has: so these tests are not part of CI
 * (test/brokers/activemq/, run by hand; README "Brokers").
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestPki } from './certs.js';
import { freePort } from './ports.js';
import { killGroup, startWatchdog } from './rabbitmq.js';

const run = promisify(execFile);
const HOME = '/usr/share/activemq';
const STOP_MS = 20_000;

export interface ActiveMqPeer {
  readonly host: '127.0.0.1';
  /** AMQP 1.0 over TLS (client certificate required); the server certificate names localhost. */
  readonly amqpsPort: number;
  readonly dir: string;
  /** The broker's log, for a test that wants to read why it refused something. */
  readonly logFile: string;
  readonly running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

export interface ActiveMqOptions {
  pki: TestPki;
  /** SASL PLAIN users. */
  users: Array<{ name: string; password: string }>;
  /** Folder with the AMQP module's jars. Default: $UPLINK_ACTIVEMQ_AMQP_LIB, else
   * ${UPLINK_PEER_CACHE:-/var/cache/uplink-peers}/activemq-amqp-5.17.2. */
  amqpLib?: string;
  /** Producer flow control: bytes a queue may hold in memory before producers wait. */
  memoryLimit?: string;
  startTimeoutMs?: number;
}

/** Creates and starts a private broker. Throws (never skips) when ActiveMQ or its AMQP module is missing. */
export async function startActiveMq(options: ActiveMqOptions): Promise<ActiveMqPeer> {
  try {
    await access(join(HOME, 'bin', 'activemq.jar'));
  } catch {
    throw new Error(`ActiveMQ test peer: ${HOME}/bin/activemq.jar not found; install it with \`apt-get install activemq\``);
  }
  const amqpLib = options.amqpLib ?? process.env.UPLINK_ACTIVEMQ_AMQP_LIB
    ?? join(process.env.UPLINK_PEER_CACHE ?? '/var/cache/uplink-peers', 'activemq-amqp-5.17.2');
  const jars = (await readdir(amqpLib).catch(() => [])).filter((f) => f.endsWith('.jar'));
  if (!jars.some((f) => f.startsWith('activemq-amqp')) || !jars.some((f) => f.startsWith('proton-j'))) {
    throw new Error('ActiveMQ test peer: Debian\'s activemq has no AMQP transport (activemq-amqp is not built: ' +
      'it needs Qpid Proton-J, which Debian does not package). Take both jars from lib/optional of Apache\'s ActiveMQ 5.17 ' +
      `distribution and set UPLINK_ACTIVEMQ_AMQP_LIB to a folder with activemq-amqp-5.17.x.jar and proton-j-0.33.x.jar (${amqpLib} has: ${jars.join(', ') || 'none'})`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'uplink-activemq-'));
  const broker = new ActiveMqBroker(dir, options, jars.map((jar) => join(amqpLib, jar)));
  try {
    await broker.init();
    await broker.start();
  } catch (error) {
    await broker.stop().catch(() => undefined);
    throw error;
  }
  return broker;
}

class ActiveMqBroker implements ActiveMqPeer {
  readonly host = '127.0.0.1' as const;
  amqpsPort = 0;
  #child: ChildProcess | undefined;
  #watchdog: ChildProcess | undefined;
  #exited: Promise<void> | undefined;
  #destroyed = false;
  readonly #storePassword = randomBytes(12).toString('hex');
  readonly #killOnExit = (): void => { if (this.#child?.pid !== undefined) killGroup(this.#child.pid, 'SIGKILL'); };

  constructor(readonly dir: string, private readonly options: ActiveMqOptions, private readonly extraJars: string[]) {}

  get running(): boolean {
    return this.#child !== undefined;
  }

  get logFile(): string {
    return join(this.dir, 'data', 'activemq.log');
  }

  /** Key and trust stores for Java's TLS, made from the test PKI's PEM files. */
  async init(): Promise<void> {
    await mkdir(join(this.dir, 'data'));
    const { pki } = this.options;
    const pass = this.#storePassword;
    await run('openssl', ['pkcs12', '-export', '-in', pki.server.cert, '-inkey', pki.server.key, '-name', 'server',
      '-out', join(this.dir, 'broker.p12'), '-passout', `pass:${pass}`]);
    await run('keytool', ['-importcert', '-noprompt', '-alias', 'ca', '-file', pki.ca.cert, '-storetype', 'PKCS12',
      '-keystore', join(this.dir, 'trust.p12'), '-storepass', pass]);
    // Debian's ActiveMQ logs through log4j 1.2 (slf4j-log4j12).
    await writeFile(join(this.dir, 'log4j.properties'), [
      'log4j.rootLogger=INFO, file',
      'log4j.appender.file=org.apache.log4j.FileAppender',
      `log4j.appender.file.File=${this.logFile}`,
      'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.file.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n',
      '',
    ].join('\n'));
    this.amqpsPort = await freePort();
    await this.#writeConfig();
  }

  async #writeConfig(): Promise<void> {
    const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
    const users = this.options.users.map((u) =>
      `<authenticationUser username="${xml(u.name)}" password="${xml(u.password)}" groups="users"/>`).join('\n          ');
    // transport.needClientAuth: the TLS handshake fails without a certificate from our CA.
    const uri = `amqp+ssl://127.0.0.1:${this.amqpsPort}?transport.needClientAuth=true&transport.transformer=jms`;
    await writeFile(join(this.dir, 'activemq.xml'), `<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="uplink-test" useJmx="false"
          persistent="true" dataDirectory="${xml(join(this.dir, 'data'))}" advisorySupport="false">
    <destinationPolicy><policyMap><policyEntries>
      <!-- A small cache per queue: queues nobody reads (a benchmark's) must not fill the broker's
           memory, or every producer waits for credit (flow control). -->
      <policyEntry queue="&gt;" producerFlowControl="true" memoryLimit="${xml(this.options.memoryLimit ?? '4mb')}"/>
    </policyEntries></policyMap></destinationPolicy>
    <!-- Producers wait (flow control) well before the 512 MB heap runs out. -->
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage limit="256 mb"/></memoryUsage>
      <storeUsage><storeUsage limit="4 gb"/></storeUsage>
      <tempUsage><tempUsage limit="1 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          ${users}
        </users>
      </simpleAuthenticationPlugin>
      <authorizationPlugin><map><authorizationMap><authorizationEntries>
        <authorizationEntry queue="&gt;" read="users" write="users" admin="users"/>
        <authorizationEntry topic="&gt;" read="users" write="users" admin="users"/>
      </authorizationEntries></authorizationMap></map></authorizationPlugin>
    </plugins>
    <sslContext>
      <sslContext keyStore="file:${xml(join(this.dir, 'broker.p12'))}" keyStorePassword="${this.#storePassword}" keyStoreType="PKCS12"
                  trustStore="file:${xml(join(this.dir, 'trust.p12'))}" trustStorePassword="${this.#storePassword}" trustStoreType="PKCS12"/>
    </sslContext>
    <transportConnectors>
      <transportConnector name="amqps" uri="${xml(uri)}"/>
    </transportConnectors>
  </broker>
</beans>
`);
  }

  async start(): Promise<void> {
    if (this.#destroyed) throw new Error('ActiveMQ test peer was destroyed');
    if (this.#child) return;
    const out = await open(join(this.dir, 'broker.out'), 'a');
    const logStart = await readFile(this.logFile).then((b) => b.length, () => 0);
    try {
      const child = spawn('java', [
        // Debian's own default heap; an OutOfMemoryError ends the broker instead of leaving it hung
        // with its sockets open (it stopped reading them, and clients waited for ever).
        '-Xms64M', '-Xmx512M', '-XX:+ExitOnOutOfMemoryError',
        `-Dlog4j.configuration=file:${join(this.dir, 'log4j.properties')}`,
        // The module's jars join Debian's lib/ on the broker's own class path.
        `-Dactivemq.classpath=${[this.dir, `${HOME}/lib/`, ...this.extraJars].join(':')}`,
        `-Dactivemq.home=${HOME}`, `-Dactivemq.base=${this.dir}`, `-Dactivemq.conf=${this.dir}`, `-Dactivemq.data=${join(this.dir, 'data')}`,
        '-jar', `${HOME}/bin/activemq.jar`, 'start', `xbean:file:${join(this.dir, 'activemq.xml')}`,
      ], { cwd: this.dir, detached: true, stdio: ['ignore', out.fd, out.fd] });
      this.#exited = new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', () => resolve());
      });
      child.unref();
      this.#child = child;
      // The 'exit' hook does not run when the test process dies by a signal: this kills the broker then.
      if (child.pid !== undefined) this.#watchdog = startWatchdog([child.pid]);
      process.once('exit', this.#killOnExit);
    } finally {
      await out.close();
    }
    try {
      await this.#awaitListener(logStart);
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** Ready once the log says the AMQP connector started (a port probe cannot tell whose port it is). */
  async #awaitListener(logStart: number): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 90_000);
    let exited = false;
    void this.#exited?.then(() => { exited = true; });
    const started = new RegExp(`Connector amqps started|Listening for connections at: amqp\\+ssl://[^\\s]*:${this.amqpsPort}`);
    for (;;) {
      const log = (await readFile(this.logFile).catch(() => Buffer.alloc(0))).subarray(logStart).toString('utf8');
      if (started.test(log) && await canConnect(this.amqpsPort)) return;
      if (exited || /ERROR|Failed to start/.test(log) && /amqp/i.test(log) && !started.test(log)) {
        throw new Error(`ActiveMQ test peer did not start its amqp+ssl connector\n${await this.#tail(logStart)}`);
      }
      if (Date.now() > deadline) throw new Error(`ActiveMQ test peer: not listening after ${this.options.startTimeoutMs ?? 90_000} ms\n${await this.#tail(logStart)}`);
      await sleep(200);
    }
  }

  async #tail(logStart: number): Promise<string> {
    const log = (await readFile(this.logFile).catch(() => Buffer.alloc(0))).subarray(logStart).toString('utf8');
    const out = await readFile(join(this.dir, 'broker.out'), 'utf8').catch(() => '');
    return `--- ${this.logFile} ---\n${log.split('\n').slice(-40).join('\n')}\n--- broker.out ---\n${out.split('\n').slice(-20).join('\n')}`;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        // SIGTERM runs ActiveMQ's shutdown hook: the store is closed cleanly, as on a service stop.
        killGroup(child.pid, 'SIGTERM');
        if (!(await within(this.#exited!, STOP_MS))) {
          killGroup(child.pid, 'SIGKILL');
          await within(this.#exited!, 5_000);
        }
      }
    } finally {
      if (this.#watchdog?.pid !== undefined) killGroup(this.#watchdog.pid, 'SIGKILL');
      this.#watchdog = undefined;
      this.#child = undefined;
      process.removeListener('exit', this.#killOnExit);
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    this.#destroyed = true;
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ms, false); });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}
