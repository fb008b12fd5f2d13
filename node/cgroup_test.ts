import assert from "node:assert/strict";
import { cgroup2MountInfo } from "./cgroup.ts";

const HYBRID = [
  "30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755",
  "31 30 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory",
  "41 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods",
].join("\n");

Deno.test("the cgroup v2 mount and its favordynmods option are read from mountinfo", () => {
  assert.deepEqual(cgroup2MountInfo(HYBRID), { path: "/sys/fs/cgroup/unified", favorDynmods: true });
  const plain = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 " +
    "rw,nsdelegate,memory_recursiveprot";
  assert.deepEqual(cgroup2MountInfo(plain), { path: "/sys/fs/cgroup", favorDynmods: false });
  assert.equal(cgroup2MountInfo("31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"), null);
});
