/**
 * Which route a reading takes: the first route, in config order, whose topic filter matches.
 * Order is the precedence, so specific routes go first and a catch-all `#` last.
 *
 * An address may hold placeholders `{N}`, replaced by level N of the topic (from 1; a missing
 * level becomes empty): `/exchange/telemetry/{2}.{3}` with `sensor/line1/temp` gives
 * `/exchange/telemetry/line1.temp`.
 *
 * RabbitMQ 4's v2 addresses (`/queues/Q`, `/exchanges/X/KEY`) carry names percent-encoded (RFC 3986),
 * so there each filling is encoded: `/queues/{2}` with `plant/line 1/temp` gives
 * `/queues/line%201`, the queue `line 1`. The rest of the template is the user's, taken as written
 * (already encoded). Other address forms (RabbitMQ's v1 `/queue/Q`, ActiveMQ's `queue://Q`) take
 * names as they are, and so the fillings.
 */
import type { Envelope, RoutedReading } from '../core/envelope.js';
import { topicMatches } from './topic-filter.js';

export type DeliveryMode = 'at-least-once' | 'at-most-once';

export interface Route {
  topic: string;
  address: string;
  priority: number;
  /** Time to live in ms; undefined: the default. */
  ttl?: number;
  delivery?: DeliveryMode;
  properties?: Record<string, string | number | boolean>;
}

export interface RouterOptions {
  routes: readonly Route[];
  /** TTL in ms for routes without one; undefined: forever. */
  defaultTtl?: number;
}

const PLACEHOLDER = /\{([1-9]\d*)\}/g;
/** Topics whose route is remembered; past this the memory starts afresh. */
const TOPIC_CACHE = 10_000;

export class Router {
  readonly #routes: readonly Route[];
  readonly #defaultTtl: number | undefined;
  /** Per route: a pattern that matches the addresses the route can produce. */
  readonly #addressPatterns: RegExp[];
  readonly #byTopic = new Map<string, Route | null>();

  constructor(options: RouterOptions) {
    this.#routes = options.routes;
    this.#defaultTtl = options.defaultTtl;
    this.#addressPatterns = options.routes.map((route) => new RegExp(`^${route.address.split(PLACEHOLDER)
      .map((part, i) => (i % 2 === 1 ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('')}$`, 's'));
  }

  /** The route of `topic`, or undefined when none matches. */
  match(topic: string): Route | undefined {
    // Devices publish to the same few topics over and over: remember the answer per topic.
    let found = this.#byTopic.get(topic);
    if (found === undefined) {
      if (this.#byTopic.size >= TOPIC_CACHE) this.#byTopic.clear();
      found = this.#routes.find((route) => topicMatches(route.topic, topic)) ?? null;
      this.#byTopic.set(topic, found);
    }
    return found ?? undefined;
  }

  /** The first route that can produce `address` (for readings spooled before a restart). */
  routeForAddress(address: string): Route | undefined {
    const i = this.#addressPatterns.findIndex((pattern) => pattern.test(address));
    return i < 0 ? undefined : this.#routes[i];
  }

  /** The route of a spooled reading: its topic's, else the first that can produce its address. */
  routeFor(address: string, topic?: string): Route | undefined {
    return (topic === undefined ? undefined : this.match(topic)) ?? this.routeForAddress(address);
  }

  /** The envelope with its address, priority and expiry; undefined when no route matches. */
  route(envelope: Envelope): RoutedReading | undefined {
    const route = this.match(envelope.topic);
    if (route === undefined) return undefined;
    const ttl = route.ttl ?? this.#defaultTtl;
    // Built field by field: this runs for every reading, and spreads cost more than they look.
    const reading: RoutedReading = {
      id: envelope.id, topic: envelope.topic, payload: envelope.payload, receivedAt: envelope.receivedAt,
      address: resolveAddress(route.address, envelope.topic), priority: route.priority,
    };
    if (ttl !== undefined) reading.expiresAt = envelope.receivedAt + ttl;
    return reading;
  }
}

export function resolveAddress(template: string, topic: string): string {
  if (!template.includes('{')) return template;
  const levels = topic.split('/');
  const fill = V2_ADDRESS.test(template) ? percentEncode : (level: string): string => level;
  return template.replace(PLACEHOLDER, (_, n: string) => fill(levels[Number(n) - 1] ?? ''));
}

const V2_ADDRESS = /^\/(queues|exchanges)\//;

/** Everything but RFC 3986's unreserved characters; encodeURIComponent leaves !'()* as they are. */
function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
