/**
 * The udp backend's packet loop on its own: how many packets a second it moves from a TUN device to a
 * UDP peer, and whether it allocates per packet — counted as V8 garbage collections (`--trace-gc`) per
 * 100 000 packets forwarded, with the agent's young-generation size (`--max-semi-space-size=1`).
 *
 * Setup, in a throw-away namespace: `flannel0` (the loop's TUN device, 10.244.1.0/32, route 10.244.0.0/16)
 * and a sink UDP socket as the one peer (10.244.2.0/24 → 127.0.0.1). A blaster process sends small UDP
 * datagrams to 10.244.2.5 as fast as it can; the kernel routes them into flannel0; the loop — in its own
 * process, started with `--trace-gc` — forwards them to the sink. References in the same run: the same loop
 * with one deliberate allocation per packet (`alloc`), to show what per-packet garbage looks like here;
 * and the other way to read a TUN device from Deno that was considered (`async-read`): a blocking `read`
 * declared `nonblocking`, so each packet is one Promise from Deno's thread pool, awaited in a loop.
 *
 * Run: `deno run -A bench/udp_loop.ts [packets]` (default 300000). Needs root.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete, withNetns } from "../ffi/mod.ts";
import { Tun } from "../ffi/tun.ts";
import { sockaddrIn, UdpSocket } from "../ffi/udp_socket.ts";
import { UdpForwarder } from "../src/backend/udp/forwarder.ts";
import { UdpPeerDriver, UdpPeerTable } from "../src/backend/udp/peers.ts";
import { V8_FLAGS_ARG } from "../src/self_command.ts";
import { uniqueNetnsName } from "../tests/helpers/names.ts";

const SELF = new URL(import.meta.url).pathname;

/** The loop process: forwards until `packets` went through, then prints its stats as JSON. */
async function child(ns: string, packets: number, mode: Mode, statsFile: string): Promise<void> {
  const alloc = mode === "alloc";
  using nl = Netlink.open({ netns: ns });
  using tun = withNetns(ns, () => Tun.open({ name: "flannel0" }));
  const idx = nl.linkIndex("flannel0");
  nl.addrReplace(idx, "10.244.1.0/32");
  nl.linkSetUp(idx);
  nl.routeReplace({ dst: "10.244.0.0/16", dev: idx });
  using sock = withNetns(ns, () => UdpSocket.bind("127.0.0.1", 0));
  using sink = withNetns(ns, () => UdpSocket.bind("127.0.0.1", 0));
  const table = new UdpPeerTable();
  new UdpPeerDriver(table).apply("10.244.2.0/24", sink.address);
  if (mode === "async-read") return await asyncRead(tun, sock, sink, packets, statsFile);
  const fw = new UdpForwarder(tun, sock, table);
  const running = fw.start();
  // Nobody needs to read the sink (a full socket buffer drops datagrams; sendto still succeeds). With
  // --alloc the sink is drained making one small object per packet: the reference for per-packet garbage.
  const junk: unknown[] = [];
  const buf = new Uint8Array(2048), from = new Uint8Array(16);
  console.log("READY");
  let started = 0;
  while (fw.stats.tunToUdp < packets) {
    await new Promise((r) => setTimeout(r, alloc ? 1 : 100));
    if (alloc) { while (sink.recvFrom(buf, from) >= 0) junk[0] = { seq: buf[27], at: performance.now() }; }
    if (!started && fw.stats.tunToUdp > 0) started = performance.now();
  }
  const seconds = (performance.now() - started) / 1000;
  await fw.stop();
  await running;
  Deno.writeTextFileSync(statsFile, JSON.stringify({ ...fw.stats, seconds }));
}

/**
 * The alternative considered: the TUN descriptor made blocking, each read a `nonblocking` FFI call (a
 * Deno thread-pool task and a Promise per packet), the send synchronous.
 */
async function asyncRead(tun: Tun, sock: UdpSocket, sink: UdpSocket, packets: number, statsFile: string) {
  const libc = Deno.dlopen("libc.so.6", {
    read: { parameters: ["i32", "buffer", "usize"], result: "i32", nonblocking: true },
    fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  });
  const F_SETFL = 4, O_RDWR = 2;
  libc.symbols.fcntl(tun.fd, F_SETFL, O_RDWR); // clear O_NONBLOCK: the read blocks on its worker thread
  const to = sockaddrIn("127.0.0.1", Number(sink.address.split(":")[1]));
  const buf = new Uint8Array(65536);
  console.log("READY");
  let n = 0, started = 0;
  while (n < packets) {
    const len = await libc.symbols.read(tun.fd, buf, 65536n);
    if (len <= 0) continue;
    if (!started) started = performance.now();
    if (sock.sendTo(buf, len, to)) n++;
  }
  const seconds = (performance.now() - started) / 1000;
  Deno.writeTextFileSync(statsFile, JSON.stringify({ tunToUdp: n, wakeups: n, seconds }));
  // A read is still pending on a worker thread: leave without waiting for it.
  Deno.exit(0);
}

type Mode = "poll" | "alloc" | "async-read";

async function run(ns: string, packets: number, mode: Mode) {
  const statsFile = Deno.makeTempFileSync({ prefix: "weft-udp-loop-" });
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-check",
      `${V8_FLAGS_ARG},--trace-gc`,
      SELF,
      "--child",
      ns,
      String(packets),
      statsFile,
      mode,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("READY")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(out);
    out += value;
  }
  const before = (out.match(/Scavenge|Mark-Compact|Mark-sweep/g) ?? []).length;
  // The blaster: one socket, small datagrams to a pod address of the peer's subnet, as fast as it goes.
  let stop = false;
  const blast = (async () => {
    using s = withNetns(ns, () => UdpSocket.bind("10.244.1.0", 0));
    const payload = new Uint8Array(64);
    const to = sockaddrIn("10.244.2.5", 9);
    try {
      while (!stop) {
        for (let i = 0; i < 2000; i++) s.sendTo(payload, payload.length, to);
        await new Promise((r) => setTimeout(r, 0));
      }
    } catch { /* the loop process exited: flannel0 went with it */ }
  })();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  stop = true;
  await blast;
  await proc.status;
  const stats = JSON.parse(Deno.readTextFileSync(statsFile));
  Deno.removeSync(statsFile);
  const gcs = (out.match(/Scavenge|Mark-Compact|Mark-sweep/g) ?? []).length - before;
  return { ...stats, gcs };
}

if (Deno.args[0] === "--child") {
  await child(Deno.args[1]!, Number(Deno.args[2]), Deno.args[4] as Mode, Deno.args[3]!);
} else {
  const packets = Number(Deno.args[0] ?? 300_000);
  const ns = uniqueNetnsName("udpl");
  netnsCreate(ns);
  try {
    withNetns(ns, () => new Deno.Command("ip", { args: ["link", "set", "lo", "up"] }).outputSync());
    const label: Record<Mode, string> = {
      poll: "udp loop as shipped (poll + drain)",
      alloc: "one allocation per packet (reference)",
      "async-read": "nonblocking FFI read per packet (alternative)",
    };
    for (const mode of ["poll", "alloc", "async-read"] as const) {
      const r = await run(ns, packets, mode);
      console.log(
        `${label[mode]}: ` +
          `${r.tunToUdp} packets in ${r.seconds.toFixed(2)} s = ${
            (r.tunToUdp / r.seconds / 1000).toFixed(0)
          } kpps; ` +
          `${r.gcs} GCs (${(r.gcs / (r.tunToUdp / 100_000)).toFixed(1)} per 100k packets); ` +
          `wake-ups ${r.wakeups} (${(r.tunToUdp / r.wakeups).toFixed(1)} packets each)`,
      );
    }
  } finally {
    netnsDelete(ns);
  }
}
