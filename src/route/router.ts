/**
 * Which route a reading takes: the first route, in config order, whose topic filter matches.
 * Order is the precedence, so specific routes go first and a catch-all `#` last.
 *
 * An address may hold placeholders `{N}`, replaced by level N of the topic (from 1; a missing
 * level becomes empty): `/exchange/telemetry/{2}.{3}` with `sensor/line1/temp` gives
 * `/exchange/telemetry/line1.temp`.
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

export class Router {
  readonly #routes: readonly Route[];
  readonly #defaultTtl: number | undefined;
  /** Per route: a pattern that matches the addresses the route can produce. */
  readonly #addressPatterns: RegExp[];

  constructor(options: RouterOptions) {
    this.#routes = options.routes;
    this.#defaultTtl = options.defaultTtl;
    this.#addressPatterns = options.routes.map((route) => new RegExp(`^${route.address.split(PLACEHOLDER)
      .map((part, i) => (i % 2 === 1 ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('')}$`, 's'));
  }

  /** The route of `topic`, or undefined when none matches. */
  match(topic: string): Route | undefined {
    return this.#routes.find((route) => topicMatches(route.topic, topic));
  }

  /** The first route that can produce `address` (for readings spooled before a restart). */
  routeForAddress(address: string): Route | undefined {
    const i = this.#addressPatterns.findIndex((pattern) => pattern.test(address));
    return i < 0 ? undefined : this.#routes[i];
  }

  /** The envelope with its address, priority and expiry; undefined when no route matches. */
  route(envelope: Envelope): RoutedReading | undefined {
    const route = this.match(envelope.topic);
    if (route === undefined) return undefined;
    const ttl = route.ttl ?? this.#defaultTtl;
    return {
      ...envelope,
      address: resolveAddress(route.address, envelope.topic),
      priority: route.priority,
      ...(ttl === undefined ? {} : { expiresAt: envelope.receivedAt + ttl }),
    };
  }
}

export function resolveAddress(template: string, topic: string): string {
  if (!template.includes('{')) return template;
  const levels = topic.split('/');
  return template.replace(PLACEHOLDER, (_, n: string) => levels[Number(n) - 1] ?? '');
}
