/**
 * Processes living in a test namespace that no test holds a handle on — e.g. the `wireguard-go` an agent
 * started detached, which outlives the agent by design — found by their network namespace, so a test can
 * stop exactly the processes its own nodes hold before the namespaces go.
 *
 * @module
 */
import { netnsPath } from "../../ffi/mod.ts";
import { stopPid } from "../../src/lab/lab.ts";

/** The pids whose network namespace is `netns` (optionally only those whose comm is `comm`). */
export function pidsInNetns(netns: string, comm?: string): number[] {
  const want = Deno.statSync(netnsPath(netns)).ino;
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.statSync(`/proc/${e.name}/ns/net`).ino !== want) continue;
      if (comm && Deno.readTextFileSync(`/proc/${e.name}/comm`).trim() !== comm) continue;
      out.push(Number(e.name));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** Stops every `comm` process in `netns` (SIGTERM, then SIGKILL). */
export async function stopNetnsProcesses(netns: string, comm: string): Promise<void> {
  let pids: number[];
  try {
    pids = pidsInNetns(netns, comm);
  } catch {
    return; // namespace already gone
  }
  await Promise.all(pids.map((pid) => stopPid(pid)));
}
