/**
 * A stolen node key, played end to end against a real manager (embedded
 * nats-server with its generated users, Deno KV) and real nodes: an
 * instance reads its node's key, and everything it then tries as that node
 * (JetStream calls whose replies or deliveries it aims at manager subjects,
 * straight publishes, requests with foreign reply subjects, results for
 * other nodes' instances, other tasks' objects) is refused, acted on by no
 * one, counted and audited.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { AuditEntry } from "../core/audit.ts";
import { createBus, unwrap } from "../core/bus.ts";
import { nodeInboxPrefix, nodePermissions } from "../core/nats_auth.ts";
import { connectNats } from "../core/nats_connect.ts";
import {
  LOG_STREAM,
  logSubject,
  nodeAssign,
  nodeHeartbeat,
  nodeJoin,
  nodeKill,
  nodeLeaving,
  nodeLeft,
  nodeRegister,
  nodeRejoin,
  nodesDrain,
  nodesEvent,
  nodesList,
  taskCancel,
  taskDone,
  taskExplain,
  taskProgress,
  taskResults,
  taskSubmit,
  type TaskView,
} from "../core/schema.ts";
import { nodeLogs, nodeObjectsRead, nodeObjectsWrite } from "../core/subjects.ts";
import { remoteBucket } from "../node/remote_bucket.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  testLogger,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Every JetStream (and object/KV store) API subject family, as a node would call it on the package bucket. */
const JETSTREAM_FAMILIES: Record<string, (stream: string) => string> = {
  "account info": () => "$JS.API.INFO",
  "stream create": (s) => `$JS.API.STREAM.CREATE.${s}`,
  "stream update": (s) => `$JS.API.STREAM.UPDATE.${s}`,
  "stream delete": (s) => `$JS.API.STREAM.DELETE.${s}`,
  "stream info": (s) => `$JS.API.STREAM.INFO.${s}`,
  "stream list": () => "$JS.API.STREAM.LIST",
  "stream names": () => "$JS.API.STREAM.NAMES",
  "stream purge": (s) => `$JS.API.STREAM.PURGE.${s}`,
  "stream msg get": (s) => `$JS.API.STREAM.MSG.GET.${s}`,
  "stream msg delete": (s) => `$JS.API.STREAM.MSG.DELETE.${s}`,
  "stream snapshot": (s) => `$JS.API.STREAM.SNAPSHOT.${s}`,
  "stream restore": (s) => `$JS.API.STREAM.RESTORE.${s}`,
  "direct get": (s) => `$JS.API.DIRECT.GET.${s}`,
  "direct get by subject": (s) => `$JS.API.DIRECT.GET.${s}.$O.parallelic-packages.M.x`,
  "consumer create": (s) => `$JS.API.CONSUMER.CREATE.${s}`,
  "consumer create filtered": (s) => `$JS.API.CONSUMER.CREATE.${s}.c1.$O.parallelic-packages.C.x`,
  "durable consumer create": (s) => `$JS.API.CONSUMER.DURABLE.CREATE.${s}.c1`,
  "consumer info": (s) => `$JS.API.CONSUMER.INFO.${s}.c1`,
  "consumer delete": (s) => `$JS.API.CONSUMER.DELETE.${s}.c1`,
  "consumer list": (s) => `$JS.API.CONSUMER.LIST.${s}`,
  "consumer names": (s) => `$JS.API.CONSUMER.NAMES.${s}`,
  "consumer next": (s) => `$JS.API.CONSUMER.MSG.NEXT.${s}.c1`,
  "leader stepdown": (s) => `$JS.API.STREAM.LEADER.STEPDOWN.${s}`,
  "message ack": (s) => `$JS.ACK.${s}.c1.1.1.1.0.0`,
  "flow control": (s) => `$JS.FC.${s}.x.y`,
  "object chunk write": () => "$O.parallelic-workspaces.C.x",
  "object meta write": () => "$O.parallelic-workspaces.M.x",
  "kv put": () => "$KV.any.key",
};

/** Bodies of the JetStream calls: each one that would make the server publish a stored message or a delivery. */
const bodyOf = (family: string, target: string) => {
  if (family.startsWith("consumer create") || family.startsWith("durable")) {
    return JSON.stringify({
      stream_name: "OBJ_parallelic-packages",
      config: { deliver_subject: target, ack_policy: "none" },
    });
  }
  if (family.includes("get")) return JSON.stringify({ last_by_subj: "$O.parallelic-packages.M.x", seq: 1 });
  return JSON.stringify({ name: target, deliver_subject: target });
};

/** Every subject the manager (or a node) serves or takes messages on, as victim node `n2` and task `taskId`. */
const servedSubjects = (taskId: string) => [
  taskSubmit.subject,
  taskCancel.subject,
  taskExplain.subject,
  nodesDrain.subject,
  nodesList.subject,
  nodesEvent.subject,
  nodeJoin.subject,
  taskDone(taskId).subject,
  taskProgress(taskId).subject,
  ...["n2", "n1"].flatMap((n) => [
    nodeRegister(n).subject,
    nodeHeartbeat(n).subject,
    taskResults(n).subject,
    nodeLeaving(n).subject,
    nodeLeft(n).subject,
    nodeObjectsRead(n).subject,
    nodeObjectsWrite(n).subject,
    nodeLogs(n).subject,
    // The LOGS stream's subjects: only the manager's log relay publishes there.
    logSubject(taskId, 0, n),
  ]),
  nodeAssign("n2").subject,
  nodeKill("n2").subject,
  nodeRejoin("n2").subject,
  "_INBOX.x",
  `${nodeInboxPrefix("n2")}.x`,
];

/** Permission violations NATS reports to a connection, as "publish SUBJECT". */
function violationsOf(nc: NatsConnection): string[] {
  const seen: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error.name === "PermissionViolationError") {
        const e = s.error as { operation?: string; subject?: string };
        seen.push(`${e.operation} ${e.subject}`);
      }
    }
  })();
  return seen;
}

const stats = async (tm: TestManager) => (await (await tm.api("/api/v1/stats")).json()).bus.rejected as number;
const audit = async (tm: TestManager) =>
  (await (await tm.api("/api/v1/audit?limit=1000")).json()).entries as AuditEntry[];

/** The manager, two nodes, a victim task running on n2, and n1's key read by an instance of another task. */
async function stolenKey(work: string) {
  const tm = await startTestManager();
  const n1 = startNodeProcess(tm.manager.natsUrl, "n1", join(work, "n1"), ["--slots=1", "--label=zone=a"]);
  const n2 = startNodeProcess(tm.manager.natsUrl, "n2", join(work, "n2"), ["--slots=2", "--label=zone=b"]);
  await nodesReady(tm.api, ["n1", "n2"]);
  const victim = await submitZip(
    tm,
    await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n[placement]\nlabels = { zone = "b" }\n`,
      "run.sh": "#!/bin/sh\necho victim-ran\nsleep 60\n",
    }),
    "victim",
  );
  const victimId = (await victim.json()).id as string;
  await waitUntil(async () => (await listInstances(tm.api, victimId)).every((i) => i.state === "running"));
  const thief = await submitZip(
    tm,
    await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\n[env]\nNODE_KEY = "${join(work, "n1", "node.nkey")}"\n` +
        `[placement]\nlabels = { zone = "a" }\n`,
      "run.sh": `#!/bin/sh\necho "key=$(cat "$NODE_KEY")"\n`,
    }),
    "thief",
  );
  const thiefId = (await thief.json()).id as string;
  assert.equal((await tm.waitForTask(thiefId)).state, "succeeded");
  const log = await (await tm.api(`/api/v1/tasks/${thiefId}/instances/0/logs`)).text();
  const seed = /key=(SU[A-Z2-7]+)/.exec(log)?.[1];
  assert.ok(seed, `the instance read the node's key: ${log}`);
  const stolen = await connectNats({
    servers: tm.manager.natsUrl,
    name: "stolen",
    credentials: { seed },
    inboxPrefix: nodeInboxPrefix("n1"),
    reconnect: false,
  });
  const watcher = await tm.connectNats();
  return {
    tm,
    victimId,
    thiefId,
    stolen,
    watcher,
    async [Symbol.asyncDispose]() {
      await stolen.close().catch(() => {});
      await watcher.close().catch(() => {});
      await n1.kill("SIGKILL");
      await n2.kill("SIGKILL");
      await tm[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name: "a stolen node key: every JetStream reflection, straight publish and foreign reply is refused and audited",
  ...opts,
  async fn(t) {
    await using work = await tempDir();
    await using env = await stolenKey(work.path);
    const { tm, victimId, stolen, watcher } = env;
    const targets = servedSubjects(victimId);
    // What lands on any of them (but the stolen node's own subjects, where it may speak, and those the manager
    // and n2 speak on meanwhile) is a breach.
    const landed: string[] = [];
    const own = (s: string) => s.startsWith("parallelic.node.n1.") || s.startsWith("_INBOX_n1.");
    const busy = [nodeHeartbeat("n2"), nodesEvent, taskProgress(victimId), taskDone(victimId)].map((s) => s.subject);
    // The relay stores n2's log of the victim there.
    busy.push(logSubject(victimId, 0, "n2"));
    for (const target of targets.filter((s) => !own(s) && !busy.includes(s))) {
      watcher.subscribe(target, {
        callback: (_e, m) => void landed.push(`${m.subject}: ${new TextDecoder().decode(m.data)}`),
      });
    }
    await watcher.flush();
    const tasksBefore = (await (await tm.api("/api/v1/tasks")).json()).tasks.length as number;
    const violations = violationsOf(stolen);

    // 1. Every JetStream API family, its reply (and a consumer's deliveries) aimed at every served subject.
    for (const [family, subject] of Object.entries(JETSTREAM_FAMILIES)) {
      await t.step(`JetStream ${family}: the server refuses a node`, async () => {
        const call = subject("OBJ_parallelic-packages");
        const before = violations.filter((v) => v === `publish ${call}`).length;
        for (const target of targets) stolen.publish(call, bodyOf(family, target), { reply: target });
        await stolen.flush();
        await waitUntil(
          () => violations.filter((v) => v === `publish ${call}`).length >= before + targets.length,
          10_000,
          `${targets.length} refusals of ${call}`,
        );
      });
    }

    // 2. Straight publishes of what the manager would act on, on every manager subject.
    const forged: Record<string, unknown> = {
      [taskCancel.subject]: { taskId: victimId, by: "admin" },
      [nodesDrain.subject]: { name: "n2", drain: true },
      [taskSubmit.subject]: {
        digest: `sha256-${"0".repeat(64)}`,
        packageBytes: 1,
        owner: "admin",
        spec: { entrypoint: "../../../../../../bin/sh", args: ["-c", `touch ${join(work.path, "pwned")}`] },
      },
      [taskResults("n2").subject]: { node: "n2", results: [] },
    };
    for (const target of targets.filter((s) => !own(s))) {
      stolen.publish(target, JSON.stringify(forged[target] ?? {}), { reply: `${nodeInboxPrefix("n1")}.r` });
    }
    await stolen.flush();
    await waitUntil(
      () => targets.filter((s) => !own(s)).every((s) => violations.includes(`publish ${s}`)),
      10_000,
      "a refusal of every straight publish",
    );

    // 3. On its own subjects: requests whose answer it aims elsewhere are dropped, counted and audited.
    const rejectedBefore = await stats(tm);
    const instances = await listInstances(tm.api, victimId);
    const now = Date.now();
    const results = {
      node: "n1",
      results: instances.map((i) => ({
        taskId: victimId,
        index: i.index,
        attempt: i.attempt,
        exitCode: 0,
        signal: null,
        startedAt: now,
        endedAt: now,
        error: null,
      })),
    };
    const foreign = targets.filter((s) => !s.startsWith("_INBOX_n1."));
    for (const reply of foreign) stolen.publish(taskResults("n1").subject, JSON.stringify(results), { reply });
    // Without any reply subject, a request is nobody's either.
    stolen.publish(
      nodeObjectsRead("n1").subject,
      JSON.stringify({ op: "info", node: "n1", bucket: "packages", object: "x" }),
    );
    await stolen.flush();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(landed.splice(0), [], "messages reached manager subjects");
    // Log chunks for an instance n2 holds, through n1's log subject: its answer aimed elsewhere is dropped.
    const forgedLog = {
      node: "n1",
      chunks: instances.map((i, seq) => ({
        taskId: victimId,
        index: i.index,
        attempt: i.attempt,
        stream: "stdout" as const,
        seq,
        data: btoa("forged log line\n"),
      })),
    };
    // (A few targets: each drop is audited, and the audit records at most 60 a minute.)
    const logReplies = [taskCancel.subject, taskSubmit.subject, nodesDrain.subject, logSubject(victimId, 0, "n1")];
    for (const reply of logReplies) stolen.publish(nodeLogs("n1").subject, JSON.stringify(forgedLog), { reply });
    await stolen.flush();
    await waitUntil(
      async () => await stats(tm) >= rejectedBefore + foreign.length + 1 + logReplies.length,
      10_000,
      "the drops counted",
    );

    // 4. Results for another node's instances, asked properly: fenced off, none accepted.
    const bus = createBus(stolen, testLogger(), { inbox: nodeInboxPrefix("n1") });
    const reply = unwrap(await bus.request(taskResults("n1"), results));
    assert.deepEqual({ accepted: reply.accepted, ignored: reply.ignored }, { accepted: 0, ignored: instances.length });
    // Log chunks for them, asked properly: dropped by the relay, none stored.
    const logReply = unwrap(await bus.request(nodeLogs("n1"), forgedLog));
    assert.deepEqual({ stored: logReply.stored, dropped: logReply.dropped }, { stored: 0, dropped: instances.length });
    // Claiming to be n2 on its own subject: dropped.
    stolen.publish(taskResults("n1").subject, JSON.stringify({ ...results, node: "n2" }), {
      reply: `${nodeInboxPrefix("n1")}.claim`,
    });
    await stolen.flush();

    // Nothing was acted on.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(landed, [], "nothing reached manager subjects or the LOGS stream");
    const jsm = await jetstreamManager(watcher);
    for (const i of instances) {
      const stored = await jsm.streams.getMessage(LOG_STREAM, { last_by_subj: logSubject(victimId, i.index, "n1") });
      assert.equal(stored, null, "no forged chunk reached the LOGS stream");
    }
    const victim = await (await tm.api(`/api/v1/tasks/${victimId}`)).json() as TaskView;
    assert.equal(victim.state, "running");
    assert.equal(victim.counts.running, 2);
    const nodes = (await (await tm.api("/api/v1/nodes")).json()).nodes as Array<{ name: string; drain: boolean }>;
    assert.equal(nodes.find((n) => n.name === "n2")?.drain, false, "n2 not drained");
    assert.equal((await (await tm.api("/api/v1/tasks")).json()).tasks.length, tasksBefore, "no task submitted");
    assert.ok(!(await Deno.stat(join(work.path, "pwned")).then(() => true, () => false)), "nothing ran");
    const victimLog = await (await tm.api(`/api/v1/tasks/${victimId}/instances/0/logs`)).text();
    assert.match(victimLog, /victim-ran/);
    assert.doesNotMatch(victimLog, /forged log line/, "a chunk from a node that did not run the attempt is not shown");
    const entries = await audit(tm);
    assert.ok(
      entries.some((e) =>
        e.action === "bus.rejected" && /reply subject 'parallelic\.task\.cancel'/.test(e.detail ?? "")
      ),
      "the foreign reply audited",
    );
    assert.ok(
      entries.some((e) => e.action === "bus.rejected" && /does not match/.test(e.detail ?? "")),
      "the forged sender audited",
    );
    assert.ok(
      entries.some((e) => e.action === "logs.dropped" && e.target === "n1" && e.detail?.includes(victimId)),
      "the forged log chunks audited",
    );
  },
});

Deno.test("a node may publish on no subject that JetStream answers: only on its own parallelic.node.<name>.*", async () => {
  await using tm = await startTestManager();
  const publish = nodePermissions("n1").publish;
  assert.ok(publish.every((s) => s.startsWith("parallelic.node.n1.")), String(publish));
  const nc = await tm.connectNats();
  try {
    const jsm = await jetstreamManager(nc);
    const streams = await jsm.streams.list().next();
    assert.ok(streams.some((s) => s.config.name === LOG_STREAM));
    const subjects = streams.flatMap((s) => s.config.subjects ?? []);
    assert.ok(subjects.length > 0);
    // A stream subject that a node's subject falls under would store (and acknowledge) what the node publishes.
    const under = (subject: string, pattern: string) => {
      const a = subject.split("."), p = pattern.split(".");
      return p.every((t, i) => t === ">" || (i < a.length && (t === "*" || t === a[i]))) &&
        (p.at(-1) === ">" ? a.length >= p.length : a.length === p.length);
    };
    for (const s of publish) {
      const wild = s.replaceAll("*", "x").replaceAll(">", "x");
      assert.ok(!subjects.some((p) => under(wild, p)), `${s} falls under a stream subject`);
    }
  } finally {
    await nc.close();
  }
});

Deno.test({
  name: "a stolen node key reads and writes no other task's package, data or outputs",
  ...opts,
  async fn() {
    await using work = await tempDir();
    await using env = await stolenKey(work.path);
    const { tm, victimId, thiefId, stolen } = env;
    const bus = createBus(stolen, testLogger(), { inbox: nodeInboxPrefix("n1") });
    const victim = await (await tm.api(`/api/v1/tasks/${victimId}`)).json() as TaskView;
    const packages = remoteBucket(bus, "n1", "packages");
    const data = remoteBucket(bus, "n1", "data");
    const workspace = remoteBucket(bus, "n1", "workspace");
    const forbidden = /may not reach object/;
    await assert.rejects(packages.read(victim.digest), forbidden, "another task's package");
    await assert.rejects(packages.info(victim.digest), forbidden);
    await assert.rejects(data.read(`manifest/${"a".repeat(64)}`), forbidden, "a data set version of no held task");
    await assert.rejects(data.read(`blob/${"b".repeat(64)}`), forbidden, "a data file of no held task");
    await assert.rejects(workspace.read(`${victimId}/0`), forbidden, "another instance's outputs");
    await assert.rejects(
      workspace.read(`${thiefId}/0`),
      forbidden,
      "its own finished instance's outputs: no longer held",
    );
    const body = () => new Blob(["forged outputs"]).stream();
    await assert.rejects(workspace.put(`${victimId}/0`, body(), { attempt: "0" }), forbidden, "another's outputs");
    await assert.rejects(workspace.put(`${victimId}/finalize`, body(), { attempt: "0" }), forbidden);
    await assert.rejects(workspace.delete(`${victimId}/1`), forbidden);
    await assert.rejects(packages.put(victim.digest, body(), { attempt: "0" }), forbidden, "a package");
    await assert.rejects(workspace.read(`../${victimId}/0`), forbidden);
    const refused = (await audit(tm)).filter((e) => e.action === "object.refused" && e.target === "n1");
    assert.ok(refused.length >= 10, `object refusals audited: ${refused.length}`);
  },
});

Deno.test({
  name: "a node refuses to run a spec whose entrypoint escapes the task root, with a failed attempt",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using node = startNodeProcess(tm.manager.natsUrl, "n1", join(work.path, "n1"), ["--slots=1"]);
    await nodesReady(tm.api, ["n1"]);
    const marker = join(work.path, "pwned");
    // What a forged assignment would carry (the gateway never makes one): straight to the node, as the manager.
    const nc = await tm.connectNats();
    const bus = createBus(nc, testLogger());
    bus.publish(nodeAssign("n1"), {
      tasks: [{
        taskId: "t0000000000000001",
        digest: `sha256-${"0".repeat(64)}`,
        run: {
          entrypoint: "../../../../../../bin/sh",
          workdir: ".",
          args: ["-c", `touch ${marker}`],
          instances: 1,
          matrix: [],
          env: {},
          cpus: 1,
          memoryBytes: 0,
          gpus: 0,
          timeoutMs: null,
          data: {},
          outputs: [],
          finalize: null,
        },
        items: [{ index: 0, attempt: 0 }],
      }],
    });
    await nc.flush();
    await waitUntil(() => /node:spec-refused/.test(node.output()), 10_000, "the refusal");
    assert.match(node.output(), /entrypoint '..\/..\/..\/..\/..\/..\/bin\/sh' leaves the task root/);
    assert.ok(!(await Deno.stat(marker).then(() => true, () => false)), "nothing ran");
    await nc.close();
  },
});
