/**
 * The steps of one PUBLISH, from aedes' `authorizePublish` hook into the spool. aedes
 * (lib/handlers/publish.js) writes the PUBACK (QoS 1), or stores the packet and writes the PUBREC
 * (QoS 2), only once that hook's callback is called, and then publishes to local subscribers. So
 * the callback comes only after the reading is committed: an acknowledgement means "on disk", and
 * under `spool.policy: block` a full spool holds back the acknowledgement, hence the device. QoS 0
 * publishes take the same path: nothing to acknowledge, but aedes reads no further from that
 * socket until they are committed, so a slow spool slows the device instead of losing readings.
 *
 * The steps, in this order, and why:
 *
 *   1. willOnStop   a will that the gateway's own stop set off is dropped (its connection was
 *                   closed by us, not lost); nothing else is worth looking at then.
 *   2. topicLimits  the cheapest check, and the one that protects the others: a topic over
 *                   mqtt.maxTopicLength or maxTopicLevels is refused before it is matched.
 *   3. acl          $SYS/ and the topic ACL: a publish the device may not make is refused as such,
 *                   never routed, never counted as unrouted.
 *   4. route        makes the reading {id, topic, exact payload bytes, receivedAt} and its route
 *                   (router.ts: the first route whose filter matches). Only allowed publishes get
 *                   an id and a time.
 *   5. unrouted     no route matched: counted (`rejected.unrouted`) and logged; `unrouted: refuse`
 *                   closes the connection, `drop` goes on with nothing to store, so that its
 *                   acknowledgement still waits for those of the publishes before it.
 *   6. dedupeQos2   a QoS 2 retransmission is stored only if its first copy was not (qos2.ts).
 *                   Last of the checks: only a publish that would be stored needs it.
 *   7. submit       into the connection's PublishPipeline (arrival order, batched appends,
 *                   mqtt.maxInFlight), whose completion calls aedes back. A will skips the
 *                   pipeline, which closed with its connection: it goes to the spool directly.
 *
 * Steps 1-6 are synchronous: each returns the error that ends the publish (aedes then closes the
 * connection without an acknowledgement: MQTT 3.1.1 cannot say "no" to a PUBLISH) or nothing to go
 * on. Only submit waits. So every publish reaches its pipeline inside aedes' call, in the order
 * the device sent them: the order they are stored in and acknowledged in.
 */
import type { Client, PublishPacket } from 'aedes';
import type { RoutedReading } from '../../core/envelope.js';
import { newReadingId } from '../../core/ids.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Router } from '../../route/router.js';
import type { Acl } from './acl.js';
import { Refusal } from './client-errors.js';
import type { Done } from './qos2.js';
import { clientFields, type Session } from './sessions.js';
import { topicProblem, type TopicLimits } from './topic-limits.js';

/** One publish on its way through the steps. */
export interface Publish {
  readonly client: Client;
  readonly session: Session;
  readonly packet: PublishPacket;
  /** A will, published by aedes after the connection dropped. */
  readonly will: boolean;
  /** Set by `route`; undefined when no route matches. */
  reading?: RoutedReading | undefined;
  /** Set by `dedupeQos2` for a retransmission: resolves to false when it is stored already. */
  check?: () => Promise<boolean>;
  /** aedes' callback; a step may wrap it to learn how the publish ended. */
  done: Done;
}

/** What the steps need of the ingest around them. */
export interface PublishEnv {
  readonly limits: TopicLimits;
  readonly unrouted: 'drop' | 'refuse';
  readonly acl: Pick<Acl, 'allows'>;
  readonly router: Pick<Router, 'route'>;
  readonly log: Pick<RateLimitedLog, 'write'>;
  /** The step-free clock readings are stamped with. */
  now(): number;
  /** True once the ingest is stopping. */
  stopping(): boolean;
  /** Counts a publish that is not stored, by reason (`stats().rejected`). */
  rejected(reason: string): void;
  /** Resolves when aedes' store holds the QoS 2 packet `messageId` of `client` (until PUBREL); rejects when not. */
  heldByBroker(client: Client, messageId: number): Promise<unknown>;
  /** Stores readings of `session`; resolves once committed. */
  append(session: Session, readings: RoutedReading[], signal: AbortSignal | undefined): Promise<void>;
}

/** A synchronous step: the error that ends the publish, or undefined to go on. */
export type PublishStep = (publish: Publish, env: PublishEnv) => Error | undefined;

export const willOnStop: PublishStep = (publish, env) =>
  (publish.will && env.stopping() ? new Refusal('will_dropped', 'the gateway is stopping') : undefined);

export const topicLimits: PublishStep = (publish, env) => {
  const problem = topicProblem(publish.packet.topic, env.limits);
  return problem === undefined ? undefined : refuse(publish, env, problem.reason, problem.detail);
};

export const acl: PublishStep = (publish, env) => {
  const topic = publish.packet.topic;
  if (!topic.startsWith('$SYS/') && env.acl.allows(publish.session, 'publish', topic)) return undefined;
  return refuse(publish, env, 'denied', `may not publish to ${topic}`);
};

export const route: PublishStep = (publish, env) => {
  const { topic, payload } = publish.packet;
  const receivedAt = env.now();
  publish.reading = env.router.route({
    id: newReadingId(receivedAt), topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), receivedAt,
  });
  return undefined;
};

export const unrouted: PublishStep = (publish, env) => {
  if (publish.reading !== undefined) return undefined;
  env.rejected('unrouted');
  if (env.unrouted === 'refuse') return refuse(publish, env, 'unrouted', 'no route matches (mqtt.unrouted: refuse)', false);
  env.log.write('warn', 'unrouted', { ...clientFields(publish.session), topic: publish.packet.topic },
    'mqtt publish dropped: no route matches its topic (mqtt.unrouted: drop)');
  return undefined;
};

export const dedupeQos2: PublishStep = (publish, env) => {
  const { packet, session, client } = publish;
  if (packet.qos !== 2 || publish.reading === undefined || publish.will) return undefined;
  const messageId = packet.messageId ?? 0;
  if (packet.dup) publish.check = session.qos2.check(messageId, () => env.heldByBroker(client, messageId));
  publish.done = session.qos2.track(messageId, publish.done);
  return undefined;
};

/** The checks, in the order of the head of this file; `submit` follows them. */
export const PUBLISH_STEPS: readonly PublishStep[] = [willOnStop, topicLimits, acl, route, unrouted, dedupeQos2];

/** The last step: to the spool, through the pipeline; calls `publish.done` once committed (or failed). */
export function submit(publish: Publish, env: PublishEnv): void {
  const { reading, session } = publish;
  if (publish.will) {
    if (reading === undefined) publish.done(null);
    else env.append(session, [reading], undefined).then(() => publish.done(null), (err: Error) => publish.done(err));
    return;
  }
  session.pipeline.submit(
    { reading, qos: publish.packet.qos, ...(publish.check === undefined ? {} : { check: publish.check }) },
    (err) => publish.done(err ?? null));
}

/** Runs the steps in order: the first error ends the publish through `done`; else `submit`. */
export function runPublish(publish: Publish, env: PublishEnv, steps: readonly PublishStep[] = PUBLISH_STEPS): void {
  for (const step of steps) {
    const error = step(publish, env);
    if (error !== undefined) {
      publish.done(error);
      return;
    }
  }
  submit(publish, env);
}

/** Counts (unless told not to) and logs a refusal; the returned error makes aedes close the connection. */
function refuse(publish: Publish, env: PublishEnv, reason: string, detail: string, count = true): Refusal {
  if (count) env.rejected(reason);
  env.log.write('warn', reason, { ...clientFields(publish.session), topic: publish.packet.topic, reason, detail },
    'mqtt publish refused; closing the connection');
  return new Refusal(reason, detail);
}
