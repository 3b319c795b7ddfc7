/**
 * A test pod's server and prober process (netpol_prober_main.ts) running inside the pod's namespace,
 * driven over its stdin/stdout.
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import { terminateChild } from "../../src/lab/lab.ts";
import type { Target } from "./netpol_reach.ts";

const MAIN = new URL("./netpol_prober_main.ts", import.meta.url).pathname;

/** One running prober. */
export class Prober implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #waiting = new Map<number, (r: { reply?: string; error?: string }) => void>();
  #next = 1;
  #ready: Promise<void>;
  #closed = false;

  private constructor(netns: string, readonly identity: string, ports: number[]) {
    const child = withNetns(netns, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", "--unstable-net", MAIN, identity, ...ports.map(String)],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn());
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    let ready!: () => void, failed!: (e: Error) => void;
    this.#ready = new Promise((res, rej) => [ready, failed] = [res, rej]);
    (async () => {
      let buf = "";
      const dec = new TextDecoder();
      for await (const chunk of child.stdout) {
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (msg === "ready") ready();
          else this.#waiting.get(msg.id)?.(msg), this.#waiting.delete(msg.id);
        }
      }
      failed(new Error(`prober ${identity} exited`));
      for (const w of this.#waiting.values()) w({ error: "prober exited" });
    })().catch((e) => failed(e));
  }

  /** Starts a prober in `netns` serving TCP and UDP on `ports`; resolves once it listens. */
  static async start(netns: string, identity: string, ports: number[]): Promise<Prober> {
    const p = new Prober(netns, identity, ports);
    await p.#ready;
    return p;
  }

  /**
   * Probes `ip` on `t`; resolves to the server's reply, or undefined when nothing came back in time.
   * `sport`: (UDP) send from that source port, so repeated probes are one conntrack flow.
   */
  async probe(ip: string, t: Target, timeoutMs: number, sport?: number): Promise<string | undefined> {
    if (t.proto === "sctp") throw new Error("SCTP probes are not supported (this kernel has no SCTP)");
    const id = this.#next++;
    const answer = new Promise<{ reply?: string; error?: string }>((res) => this.#waiting.set(id, res));
    await this.#writer.write(
      new TextEncoder().encode(
        `${
          JSON.stringify({ id, ip, proto: t.proto, port: t.port, timeoutMs, ...(sport ? { sport } : {}) })
        }\n`,
      ),
    );
    const r = await answer;
    return r.reply;
  }

  /** Stops the process. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.close().catch(() => {});
    await terminateChild(this.#child, "SIGKILL", 1000);
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
