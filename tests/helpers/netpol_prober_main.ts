/**
 * The program each test pod runs (upstream's agnhost, in small): serves TCP and UDP on the given ports,
 * answering each connection or datagram with `<identity> <proto>/<port>`, and probes on request.
 *
 * Run inside a pod namespace: `deno run -A --unstable-net netpol_prober_main.ts <identity> 80 81`.
 * It prints `ready` once listening, then reads probe requests as JSON lines on stdin —
 * `{"id": 1, "ip": "10.244.1.5", "proto": "tcp", "port": 80, "timeoutMs": 1000}` — and answers each,
 * in any order, with `{"id": 1, "reply": "x/b tcp/80"}` or `{"id": 1, "error": "timeout"}`. Every probe
 * is a new connection (TCP) or a new socket with a new source port (UDP), so each one is judged as a
 * new connection by the policy rules.
 *
 * @module
 */

const [identity = "?", ...portArgs] = Deno.args;
const ports = portArgs.map(Number);
const enc = new TextEncoder();
const dec = new TextDecoder();

for (const port of ports) {
  // "::" takes IPv4 too (as ::ffff:a.b.c.d), so one socket per port serves both families.
  const tcp = Deno.listen({ hostname: "::", port });
  (async () => {
    for await (const c of tcp) {
      c.write(enc.encode(`${identity} tcp/${port}\n`)).catch(() => {}).finally(() => {
        try {
          c.close();
        } catch { /* closed */ }
      });
    }
  })();
  const udp = Deno.listenDatagram({ hostname: "::", port, transport: "udp" });
  (async () => {
    for await (const [, addr] of udp) udp.send(enc.encode(`${identity} udp/${port}`), addr).catch(() => {});
  })();
}

interface Req {
  id: number;
  ip: string;
  proto: "tcp" | "udp";
  port: number;
  timeoutMs: number;
  /** UDP: send from this source port (the same flow each time) instead of a fresh one. */
  sport?: number;
}

function out(obj: unknown): void {
  Deno.stdout.writeSync(enc.encode(`${JSON.stringify(obj)}\n`));
}

async function probeTcp(r: Req): Promise<string> {
  const signal = AbortSignal.timeout(r.timeoutMs);
  const conn = await Deno.connect({ hostname: r.ip, port: r.port, signal });
  try {
    const buf = new Uint8Array(256);
    const n = await Promise.race([
      conn.read(buf),
      new Promise<null>((_, rej) => signal.addEventListener("abort", () => rej(new Error("timeout")))),
    ]);
    return dec.decode(buf.subarray(0, n ?? 0)).trim();
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

// UDP probes take their source ports in turn from a range below the kernel's ephemeral one: a port the
// kernel picked at random could repeat a recent probe's 4-tuple, whose conntrack entry (30 s) would let
// the datagram through as part of an old "connection" — not a judgement of the policy in force.
let nextUdpPort = 20000;
function udpSocket(v6: boolean): Deno.DatagramConn {
  for (let i = 0; i < 100; i++) {
    const port = nextUdpPort;
    nextUdpPort = nextUdpPort >= 32000 ? 20000 : nextUdpPort + 1;
    try {
      return Deno.listenDatagram({ hostname: v6 ? "::" : "0.0.0.0", port, transport: "udp" });
    } catch { /* in use: next */ }
  }
  throw new Error("no free UDP source port");
}

async function probeUdp(r: Req): Promise<string> {
  const sock = r.sport
    ? Deno.listenDatagram({
      hostname: r.ip.includes(":") ? "::" : "0.0.0.0",
      port: r.sport,
      transport: "udp",
    })
    : udpSocket(r.ip.includes(":"));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(enc.encode("probe"), { transport: "udp", hostname: r.ip, port: r.port });
    const [data] = await Promise.race([
      sock.receive(),
      new Promise<never>((_, rej) => timer = setTimeout(() => rej(new Error("timeout")), r.timeoutMs)),
    ]);
    return dec.decode(data).trim();
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

async function handle(r: Req): Promise<void> {
  try {
    const reply = r.proto === "tcp" ? await probeTcp(r) : await probeUdp(r);
    out({ id: r.id, reply });
  } catch (err) {
    out({
      id: r.id,
      error: err instanceof Error ? (err.name === "AbortError" ? "timeout" : err.message) : String(err),
    });
  }
}

out("ready");
let buf = "";
for await (const chunk of Deno.stdin.readable) {
  buf += dec.decode(chunk, { stream: true });
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (line) handle(JSON.parse(line));
  }
}
