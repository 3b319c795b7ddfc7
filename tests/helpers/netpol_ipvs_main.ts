/**
 * kube-proxy's IPVS mode, emulated for UDP (this kernel has no ip_vs module, so `ipvsadm` cannot program
 * the real thing): run in a node's namespace, it receives datagrams addressed to Service IPs that are
 * local addresses of the node (as IPVS's kube-ipvs0 addresses are) — delivered locally, LOCAL_IN — and
 * sends each on to the Service's endpoint from a socket bound to the client's own address and port
 * (`IP_TRANSPARENT`, through libc: Deno's sockets cannot set it), so the packet leaves through LOCAL_OUT
 * and POSTROUTING with the client's source, never meeting the forward hook: the path IPVS's NAT
 * forwarding gives a packet. The
 * endpoint's reply goes straight back to the client (IPVS would rewrite its source to the Service IP on
 * the way; the probes accept a reply from any address).
 *
 * `deno run -A --unstable-net netpol_ipvs_main.ts '<json: [{"vip","port","ip"}]>'`; prints `ready` once
 * it listens. Each datagram is forwarded once; nothing is kept.
 *
 * @module
 */

const rules = JSON.parse(Deno.args[0] ?? "[]") as { vip: string; port: number; ip: string }[];

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
}).symbols;

const errno = () => new Deno.UnsafePointerView(libc.__errno_location()!).getInt32();

function sockaddr(ip: string, port: number): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, 2, true); // AF_INET
  v.setUint16(2, port, false);
  ip.split(".").forEach((o, i) => (sa[4 + i] = Number(o)));
  return sa;
}

/** Sends `data` to `to:port` from `from:fromPort`, an address this node does not have (IP_TRANSPARENT). */
function sendAs(from: string, fromPort: number, to: string, port: number, data: Uint8Array): void {
  const fd = libc.socket(2, 2, 0); // AF_INET, SOCK_DGRAM
  if (fd < 0) throw new Error("socket failed");
  try {
    const one = new Uint8Array(new Int32Array([1]).buffer);
    if (libc.setsockopt(fd, 0, 19, one, 4) !== 0) throw new Error("IP_TRANSPARENT refused"); // SOL_IP
    const src = sockaddr(from, fromPort);
    if (libc.bind(fd, src, 16) !== 0) throw new Error(`bind ${from}:${fromPort} failed`);
    const dst = sockaddr(to, port);
    if (libc.sendto(fd, new Uint8Array(data), BigInt(data.length), 0, dst, 16) < 0) {
      throw new Error(`sendto failed: errno ${errno()}`);
    }
  } finally {
    libc.close(fd);
  }
}

async function forward(vip: string, port: number, ip: string): Promise<void> {
  const sock = Deno.listenDatagram({ hostname: vip, port, transport: "udp" });
  for await (const [data, from] of sock) {
    const client = from as Deno.NetAddr;
    try {
      sendAs(client.hostname, client.port, ip, port, data);
    } catch (err) {
      // EPERM: netfilter dropped it on its way out — a policy's verdict, not a fault.
      if ((err as Error).message.endsWith("errno 1")) continue;
      console.error(
        `forwarding ${client.hostname}:${client.port} -> ${ip}:${port}: ${(err as Error).message}`,
      );
    }
  }
}

for (const r of rules) forward(r.vip, r.port, r.ip);
console.log("ready");
