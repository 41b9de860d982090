/** `micro stats`, `top`, `pause`: the cgroup files parsed (v1 and v2) through a fake reader. */
import assert from "node:assert/strict";
import {
  cgroupPids,
  cpuPercent,
  freezerOf,
  hostCpu,
  isFrozen,
  netDev,
  sample,
} from "../../core/stats/cgroup.ts";
import { binarySize, decimalSize, filterPs, formatStats } from "../../core/stats/mod.ts";

const reader = (files: Record<string, string>) => (p: string) => files[p];
const MEMINFO = { "/proc/meminfo": "MemTotal:        8000000 kB\nMemFree: 1 kB\n" };
const NET = {
  "/proc/42/net/dev": "Inter-|   Receive ...\n face |bytes packets\n" +
    "    lo:  100 1 0 0 0 0 0 0  100 1 0 0 0 0 0 0\n" +
    "  eth0: 1500 3 0 0 0 0 0 0  700 2 0 0 0 0 0 0\n",
};

Deno.test("sample reads cgroup v1: cpuacct, memory less inactive file, pids, blkio; the init's net", () => {
  const v1 = "/sys/fs/cgroup";
  const s = sample(
    [
      `${v1}/cpu,cpuacct/micro/c`,
      `${v1}/memory/micro/c`,
      `${v1}/pids/micro/c`,
      `${v1}/blkio/micro/c`,
    ],
    42,
    reader({
      ...MEMINFO,
      ...NET,
      [`${v1}/cpu,cpuacct/micro/c/cpuacct.usage`]: "123456789\n",
      [`${v1}/memory/micro/c/memory.usage_in_bytes`]: "1048576\n",
      [`${v1}/memory/micro/c/memory.stat`]: "cache 0\ntotal_inactive_file 48576\n",
      [`${v1}/memory/micro/c/memory.limit_in_bytes`]: "9223372036854771712\n",
      [`${v1}/pids/micro/c/pids.current`]: "3\n",
      [`${v1}/blkio/micro/c/blkio.throttle.io_service_bytes`]:
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n8:16 Read 1\nTotal 12289\n",
    }),
  );
  assert.deepEqual(s, {
    cpuNs: 123456789,
    memUsage: 1000000,
    // No limit: the host's memory.
    memLimit: 8000000 * 1024,
    pids: 3,
    blockRead: 4097,
    blockWrite: 8192,
    netRx: 1500,
    netTx: 700,
  });
});

Deno.test("sample reads cgroup v2: cpu.stat, memory.current/max, pids, io.stat", () => {
  const d = "/sys/fs/cgroup/micro/c";
  const s = sample(
    [d],
    undefined,
    reader({
      ...MEMINFO,
      [`${d}/cgroup.controllers`]: "cpu memory pids io\n",
      [`${d}/cpu.stat`]: "usage_usec 2500\nuser_usec 2000\n",
      [`${d}/memory.current`]: "4096000\n",
      [`${d}/memory.stat`]: "anon 1\ninactive_file 96000\n",
      [`${d}/memory.max`]: "67108864\n",
      [`${d}/pids.current`]: "2\n",
      [`${d}/io.stat`]: "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n",
    }),
  );
  assert.deepEqual(s, {
    cpuNs: 2_500_000,
    memUsage: 4_000_000,
    memLimit: 67108864,
    pids: 2,
    blockRead: 11,
    blockWrite: 22,
  });
  const unlimited = sample(
    [d],
    undefined,
    reader({
      ...MEMINFO,
      [`${d}/cgroup.controllers`]: "",
      [`${d}/memory.current`]: "0\n",
      [`${d}/memory.max`]: "max\n",
    }),
  );
  assert.equal(unlimited.memLimit, 8000000 * 1024);
});

Deno.test("cpuPercent is Docker's: the container's share of host time, times the CPUs", () => {
  const host = hostCpu("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400\ncpu1 50 0 50 400\n");
  assert.deepEqual(host, { ns: 1000 * 1e7, cpus: 2 });
  // Half a second of CPU over two seconds of two CPUs' total (4 s): 0.5/4*2 = 25%.
  assert.equal(cpuPercent({ cpuNs: 0, hostNs: 0 }, { cpuNs: 0.5e9, hostNs: 4e9 }, 2), 25);
  assert.equal(cpuPercent({}, { cpuNs: 1, hostNs: 1 }, 2), 0);
});

Deno.test("netDev leaves out lo", () => {
  assert.deepEqual(netDev(NET["/proc/42/net/dev"]), { rx: 1500, tx: 700 });
});

Deno.test("cgroupPids walks the cgroup and its children once each", () => {
  const files = reader({ "/c/cgroup.procs": "1\n2\n", "/c/sub/cgroup.procs": "3\n2\n" });
  const list = (d: string) => d === "/c" ? ["sub"] : [];
  assert.deepEqual(cgroupPids("/c", files, list), [1, 2, 3]);
});

Deno.test("freezerOf and isFrozen: v2 cgroup.freeze/cgroup.events, v1 freezer.state", () => {
  const v2 = reader({ "/c/cgroup.freeze": "1\n", "/c/cgroup.events": "populated 1\nfrozen 1\n" });
  assert.deepEqual(freezerOf(["/c"], v2), { version: 2, dir: "/c" });
  assert.equal(isFrozen({ version: 2, dir: "/c" }, v2), true);
  const v1 = reader({ "/f/c/freezer.state": "THAWED\n" });
  assert.deepEqual(freezerOf(["/m/c", "/f/c"], v1), { version: 1, dir: "/f/c" });
  assert.equal(isFrozen({ version: 1, dir: "/f/c" }, v1), false);
  assert.equal(freezerOf(["/m/c"], v1), undefined);
});

Deno.test("sizes as Docker prints them; the table; ps filtered by its PID column", () => {
  assert.equal(binarySize(292 * 1024), "292KiB");
  assert.equal(binarySize(64 * 1024 * 1024), "64MiB");
  assert.equal(binarySize(1536), "1.5KiB");
  assert.equal(decimalSize(0), "0B");
  assert.equal(decimalSize(1500), "1.5kB");
  const table = formatStats([{
    ID: "abc",
    Name: "n",
    CPUPerc: "1.00%",
    MemUsage: "1MiB / 2MiB",
    MemPerc: "50.00%",
    NetIO: "0B / 0B",
    BlockIO: "0B / 0B",
    PIDs: "1",
  }]);
  assert.equal(
    table,
    "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %    NET I/O   BLOCK I/O   PIDS\n" +
      "abc            n      1.00%   1MiB / 2MiB         50.00%   0B / 0B   0B / 0B     1\n",
  );
  const ps = "UID PID PPID CMD\nroot 1 0 init\nroot 20 1 sh\nroot 21 20 sleep\n";
  assert.equal(filterPs(ps, [20, 21]), "UID PID PPID CMD\nroot 20 1 sh\nroot 21 20 sleep\n");
  assert.throws(() => filterPs("USER COMMAND\n", [1]), /no PID column/);
});

Deno.test("doctor reads the kernel version from the release string", async () => {
  const { kernelVersion } = await import("../../core/doctor/mod.ts");
  assert.deepEqual(kernelVersion("6.18.44-fc-v1252"), [6, 18]);
  assert.deepEqual(kernelVersion("5.4.0-150-generic"), [5, 4]);
  assert.deepEqual(kernelVersion("weird"), [0, 0]);
});
