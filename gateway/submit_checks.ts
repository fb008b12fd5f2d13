/**
 * What a submit is told besides its task: a warning when no node the
 * manager knows could ever run it (its cpus over every node's slots, gpus or
 * labels no node has), and, with `?strict=1`, a refusal instead.
 *
 * @module
 */
import { whyNoNodeFits } from "../actors/task/placement.ts";
import { type Bus, unwrap } from "../core/bus.ts";
import { ValidationError } from "../core/errors.ts";
import { nodeCanEverFit } from "../actors/task/mod.ts";
import { nodesList, type TaskSpec } from "../core/schema.ts";

/**
 * Why no known node could ever run `spec`, in words; empty when one could, or when no node has joined yet (nodes may
 * come: the task waits for them), or the node list cannot be read.
 *
 * @throws {ValidationError} `unplaceable`, when `strict` and there is a reason.
 */
export async function placementWarnings(bus: Bus, spec: TaskSpec, strict: boolean): Promise<string[]> {
  // A warning is a courtesy: when the node list cannot be had, the submit goes on without one.
  const nodes = await bus.request(nodesList, {}, { timeoutMs: 2000 }).then((r) => unwrap(r).nodes, () => []);
  if (nodes.length === 0 || nodes.some((n) => nodeCanEverFit(n, spec))) return [];
  const reasons = whyNoNodeFits(spec, nodes);
  const warnings = reasons.length > 0
    ? reasons.map((r) => `no node could ever run it: ${r}`)
    : [`no node could ever run it: none has cpus ${spec.cpus}, gpus ${spec.gpus} and the labels it asks at once`];
  if (strict) {
    throw new ValidationError(
      `Cannot submit task '${spec.name}' as ${warnings.join("; ")}; without --strict (?strict=1) it is accepted ` +
        `and waits for such a node`,
      { code: "unplaceable" },
    );
  }
  return warnings;
}
