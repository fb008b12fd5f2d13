/**
 * The node's presence at the manager: it registers (again when told to
 * rejoin, retrying with backoff until the manager answers) and then sends a
 * heartbeat with what it holds at the interval the manager asked for.
 *
 * @module
 */
import { hostname } from "node:os";
import { type Bus, unwrap } from "../core/bus.ts";
import type { Clock, TimerId } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { HostUsage } from "./host_usage.ts";
import { type GpuDevice, type InstanceRef, nodeHeartbeat, type NodeLimits, nodeRegister } from "../core/schema.ts";

/** What the node says of itself when it registers. */
export interface NodeOffer {
  slots: number;
  memoryBytes: number;
  gpus: number;
  /** Its GPUs as nvidia-smi listed them. */
  gpuDevices?: GpuDevice[];
  /** How it holds instances to their resources. */
  limits?: NodeLimits;
  labels: Record<string, string>;
  version: string;
}

/** What presence needs. */
export interface PresenceDeps {
  bus: Bus;
  name: string;
  clock: Clock;
  log: Logger;
  signal: AbortSignal;
  /** What the node offers, read at each registration. */
  offer(): NodeOffer;
  /** Every attempt the node holds: waiting, running, or reported and not yet acknowledged. */
  holding(): InstanceRef[];
  usedSlots(): number;
  /** The machine's CPU and memory use, sent with each heartbeat. */
  hostUsage?(): HostUsage;
  /** True once the node stops: no more registering. */
  stopping(): boolean;
}

/** The presence of {@linkcode createPresence}. */
export interface Presence {
  /** Registers (once at a time); resolves when registered or the node stops. */
  register(): Promise<void>;
  /** Stops the heartbeat and waits for a registration under way. */
  stop(): Promise<void>;
}

/** Creates the node's registration and heartbeat. */
export function createPresence(deps: PresenceDeps): Presence {
  const { bus, name, clock, log, signal } = deps;
  let heartbeatMs = 1000;
  let heartbeatTimer: TimerId | undefined;

  const heartbeat = () => {
    heartbeatTimer = undefined;
    if (signal.aborted) return;
    try {
      bus.publish(nodeHeartbeat(name), {
        name,
        sentAt: clock.now(),
        usedSlots: deps.usedSlots(),
        holding: deps.holding(),
        ...deps.hostUsage?.(),
      });
    } catch (e) {
      log.warn("node:heartbeat-failed", { error: String(e) });
    }
    heartbeatTimer = clock.setTimeout(heartbeat, heartbeatMs);
  };

  let registering: Promise<void> | undefined;
  const register = () => {
    registering ??= (async () => {
      let delay = 100;
      while (!deps.stopping()) {
        try {
          const offer = deps.offer();
          const reply = unwrap(
            await bus.request(nodeRegister(name), {
              name,
              slots: offer.slots,
              cpus: navigator.hardwareConcurrency,
              memoryBytes: offer.memoryBytes,
              gpus: offer.gpus,
              gpuDevices: offer.gpuDevices,
              limits: offer.limits,
              labels: offer.labels,
              version: offer.version,
              hostname: hostname(),
              holding: deps.holding(),
            }, { timeoutMs: 3000 }),
          );
          heartbeatMs = reply.heartbeatMs;
          log.info("node:registered", { slots: offer.slots, heartbeatMs, leaseMs: reply.leaseMs });
          if (heartbeatTimer === undefined) heartbeat();
          return;
        } catch (e) {
          log.warn("node:register-failed", { error: (e as Error).message, retryInMs: delay });
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 5000);
        }
      }
    })().finally(() => registering = undefined);
    return registering;
  };

  return {
    register,
    async stop() {
      if (heartbeatTimer !== undefined) clock.clearTimeout(heartbeatTimer);
      await registering?.catch(() => {});
    },
  };
}
