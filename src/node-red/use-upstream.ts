/**
 * How a node finds the runtime of its `uplink-upstream` config node. Without one (not set, or its
 * settings are invalid) the node shows why in its status and fails every message with that reason.
 */
import { GatewayError, messageOf } from '../core/errors.js';
import type { Node, NodeAPI } from './red-api.js';
import type { UplinkRuntime } from './runtime.js';
import { failedStatus, uplinkStatus } from './status.js';
import type { UpstreamConfigNode } from './uplink-upstream.js';

export interface UsedUplink {
  uplink: UplinkRuntime;
  /** Resolves once the runtime runs; rejects with why it cannot. */
  ready: Promise<UplinkRuntime>;
}

/** The runtime, started; or undefined with the reason shown in the node's status. */
export function useUplink(RED: NodeAPI, node: Node, configId: string | undefined): UsedUplink | { failure: GatewayError } {
  const config = (configId ? RED.nodes.getNode(configId) : null) as UpstreamConfigNode | null;
  if (config === null || config.uplink === undefined || config.use === undefined) {
    const failure = new GatewayError('CONFIG_INVALID', config === null ? 'no uplink-upstream configured' : `uplink-upstream: ${config.failure ?? 'invalid'}`);
    node.status(failedStatus(failure.message));
    return { failure };
  }
  const ready = config.use();
  ready.catch((err: unknown) => node.status(failedStatus(messageOf(err))));
  return { uplink: config.uplink, ready };
}

/** Keeps the node's status in step with the runtime; `refresh` shows it now, `stop` ends it. */
export function followStatus(node: Node, uplink: UplinkRuntime, extra: () => { detail?: string; error?: string } = () => ({})): { refresh: () => void; stop: () => void } {
  const refresh = (): void => {
    if (uplink.running) node.status(uplinkStatus(uplink.snapshot(), extra()));
  };
  return { refresh, stop: uplink.onChange(refresh) };
}
