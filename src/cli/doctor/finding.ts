/**
 * What every doctor check reports, and the small probes of /proc that several checks share.
 *
 * @module
 */

/** How a check came out. */
export type Status = "ok" | "warn" | "fail" | "skip";

/** One finding. */
export interface Finding {
  /** Stable id, e.g. `ip_forward`. */
  id: string;
  /** Outcome. */
  status: Status;
  /** What was seen. */
  message: string;
  /** What to do about it (for warn/fail). */
  fix?: string;
}

/** A sysctl or /proc file's text, trimmed; undefined when it cannot be read. */
export function readSysctl(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** Whether a UDP port is bound in this namespace, from /proc/thread-self/net/udp{,6}. */
export function udpPortBound(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  // thread-self: the namespace of the calling thread (which may have switched), not of the process.
  for (const f of ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"]) {
    const text = readSysctl(f) ?? "";
    for (const line of text.split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local && `${local.slice(local.indexOf(":"))} `.startsWith(hex)) return true;
    }
  }
  return false;
}
