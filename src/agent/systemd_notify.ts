/**
 * systemd's service notifications (sd_notify(3)), as flanneld sends them, for deploy/weft.service's
 * `Type=notify`: `READY=1` once the node is ready — lease held, subnet.env written, rules installed, the
 * datapath programmed — so units ordered after weft (`Before=kubelet.service`) start with the network in
 * place, and `STOPPING=1` when the agent is told to stop. Each message goes as one datagram to the unix
 * socket systemd names in `$NOTIFY_SOCKET` (`@…`: an abstract name). Without that variable (not under
 * systemd, or `Type=simple`) nothing is sent. A notification that cannot be sent is logged once and never
 * stops the agent.
 *
 * @module
 */
import { sendUnixDatagram } from "../../ffi/unix_datagram.ts";
import { sleep } from "../async.ts";
import { log } from "../log.ts";

const logger = log("agent");

/** How often readiness is checked until it holds, ms. */
const READY_POLL_MS = 100;

/** Sends notifications to systemd, when it asked for them. */
export class SystemdNotifier {
  #warned = false;

  /**
   * @param socket `$NOTIFY_SOCKET` (undefined: not under systemd, nothing is sent)
   * @param send how a datagram is sent (tests pass their own)
   */
  constructor(
    readonly socket: string | undefined = Deno.env.get("NOTIFY_SOCKET") || undefined,
    private readonly send: (name: string, data: Uint8Array<ArrayBuffer>) => void = sendUnixDatagram,
  ) {}

  /** Sends `KEY=value` lines as one message; false when it could not (logged once). */
  notify(state: Record<string, string>): boolean {
    if (!this.socket) return false;
    const text = Object.entries(state).map(([k, v]) => `${k}=${v.replace(/\n/g, " ")}`).join("\n");
    try {
      this.send(this.socket, new TextEncoder().encode(text));
      return true;
    } catch (err) {
      if (!this.#warned) {
        this.#warned = true;
        logger.warn("cannot notify systemd at NOTIFY_SOCKET={socket}: {error}", {
          socket: this.socket,
          error: (err as Error).message,
        });
      }
      return false;
    }
  }

  /** `STOPPING=1`: the agent is shutting down (its datapath stays). */
  stopping(): void {
    this.notify({ STOPPING: "1", STATUS: "stopping; the datapath stays in place" });
  }

  /**
   * Sends `READY=1` (with `STATUS=` from `describe`) as soon as `ready()` holds, checking every 100 ms;
   * returns at once when systemd did not ask, and when `signal` aborts first.
   */
  async readyWhen(ready: () => boolean, describe: () => string, signal: AbortSignal): Promise<void> {
    if (!this.socket) return;
    while (!signal.aborted && !ready()) await sleep(READY_POLL_MS, signal);
    if (signal.aborted) return;
    this.notify({ READY: "1", STATUS: describe() });
    logger.debug("notified systemd: ready");
  }
}
