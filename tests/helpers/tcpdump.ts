/**
 * tcpdump in a namespace, started and known to be capturing before the test sends anything (it says
 * "listening on …" on stderr once the capture is open), so a loaded machine cannot make it miss packets.
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";

/** A running capture. */
export interface Capture {
  /** Waits for tcpdump to end by itself (`-c N`), at most `ms`, then stops it; returns what it printed. */
  output(ms?: number): Promise<string>;
  /** Stops it now; returns what it printed. */
  stop(): Promise<string>;
  /**
   * Waits until it has printed `n` packet lines (30 s at most: tcpdump reads the kernel's buffer when it
   * gets the CPU), then stops it; returns what it printed.
   */
  stopAfter(n: number): Promise<string>;
}

/** Starts `tcpdump -l -n <args…>` in `netns` and resolves once it is capturing. */
export async function startCapture(netns: string, args: string[]): Promise<Capture> {
  const child = withNetns(
    netns,
    () =>
      new Deno.Command("tcpdump", { args: ["-l", "-n", ...args], stdout: "piped", stderr: "piped" }).spawn(),
  );
  let text = "";
  const out = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) text += dec.decode(chunk, { stream: true });
    return text;
  })();
  const stderr = child.stderr.getReader();
  let err = "";
  const dec = new TextDecoder();
  while (!err.includes("listening on")) {
    const { value, done } = await stderr.read();
    if (done) throw new Error(`tcpdump ${args.join(" ")} did not start: ${err}`);
    err += dec.decode(value, { stream: true });
  }
  // Keep draining stderr so tcpdump never blocks on it.
  (async () => {
    while (!(await stderr.read()).done) { /* drain */ }
  })().catch(() => {});
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await child.status;
    return await out;
  };
  return {
    stop,
    async stopAfter(n: number) {
      const end = Date.now() + 30_000;
      while (text.split("\n").filter(Boolean).length < n && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      return await stop();
    },
    async output(ms = 5000) {
      const timer = setTimeout(() => {
        try {
          child.kill("SIGTERM");
        } catch { /* exited */ }
      }, ms);
      await child.status;
      clearTimeout(timer);
      return await out;
    },
  };
}
