/**
 * Which route a reading takes: the first route, in config order, whose topic filter matches.
 * Order is the precedence, so specific routes go first and a catch-all `#` last.
 */
import type { Envelope, RoutedReading } from '../core/envelope.js';
import { topicMatches } from './topic-filter.js';

export interface Route {
  topic: string;
  address: string;
  priority: number;
  /** Time to live in ms; undefined: the default. */
  ttl?: number;
}

export interface RouterOptions {
  routes: readonly Route[];
  /** TTL in ms for routes without one; undefined: forever. */
  defaultTtl?: number;
}

export class Router {
  readonly #routes: readonly Route[];
  readonly #defaultTtl: number | undefined;

  constructor(options: RouterOptions) {
    this.#routes = options.routes;
    this.#defaultTtl = options.defaultTtl;
  }

  /** The route of `topic`, or undefined when none matches. */
  match(topic: string): Route | undefined {
    return this.#routes.find((route) => topicMatches(route.topic, topic));
  }

  /** The envelope with its address, priority and expiry; undefined when no route matches. */
  route(envelope: Envelope): RoutedReading | undefined {
    const route = this.match(envelope.topic);
    if (route === undefined) return undefined;
    const ttl = route.ttl ?? this.#defaultTtl;
    return {
      ...envelope,
      address: route.address,
      priority: route.priority,
      ...(ttl === undefined ? {} : { expiresAt: envelope.receivedAt + ttl }),
    };
  }
}
