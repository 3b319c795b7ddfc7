/**
 * Pods added to a {@linkcode NetpolMatrix} node the way kubelet adds them: weft's CNI plugin (main.ts in
 * CNI mode) run in the node's namespace with kube-flannel's config and kubelet's CNI_ARGS, talking to
 * that node's running agent over its socket.
 *
 * As under the shipped DaemonSet, the plugin sees other files than the agent — it runs in a mount
 * namespace of its own where the IPAM store's folder is another directory (the host's /var/lib, while
 * the agent's container has its own) — so the agent refuses to run the ADD itself, the plugin runs it,
 * and registers the pod with its own `register-pod` request before ADD returns. With `register: false`
 * the config names no socket: a plugin that cannot tell the agent (an older one, or none listening).
 *
 * @module
 */
import { netnsCreate, netnsDelete } from "../../ffi/mod.ts";
import { cni, type CniCall, MAIN } from "./cni.ts";
import type { NetpolMatrix } from "./netpol_matrix.ts";
import { Prober } from "./netpol_prober.ts";
import { uniqueNetnsName } from "./names.ts";
import { PRIVATE_MOUNTS_SH } from "./private_mounts.ts";

/** A pod added through CNI. */
export interface CniPod {
  /** `ns/name`. */
  key: string;
  /** Its namespace. */
  netns: string;
  /** The address IPAM gave it. */
  ip: string;
  /** Its server (started before ADD: it answers as soon as the pod has a link). */
  prober: Prober;
  /** `performance.now()` when ADD returned. */
  addedAt: number;
  /** The ADD call. */
  call: CniCall;
}

/** Adds and removes pods through the CNI plugin on the matrix's nodes. */
export class MatrixCni implements AsyncDisposable {
  #pods: CniPod[] = [];
  #prepared: { netns: string; prober: Prober }[] = [];
  #counter = 0;

  /** @param m the matrix (its agents serve the sockets) */
  constructor(readonly m: NetpolMatrix) {}

  /** The plugin's config for node `node` (kube-flannel's entry, with this test's paths). */
  conf(node: number, register: boolean, delegate: Record<string, unknown> = {}): Record<string, unknown> {
    const dir = `${this.m.dir}/cni-${node}`;
    return {
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      subnetFile: this.m.agents[node]!.subnetFile,
      dataDir: `${dir}/flannel`,
      ...(register ? {} : { agentSocket: "" }),
      delegate: {
        hairpinMode: true,
        isDefaultGateway: true,
        ipam: { dataDir: `${dir}/networks` },
        ...delegate,
      },
    };
  }

  /** The plugin's command line: its own mount namespace, where the IPAM folder is the "host's". */
  #plugin(node: number): string[] {
    const dir = `${this.m.dir}/cni-${node}`;
    Deno.mkdirSync(`${dir}/networks`, { recursive: true });
    Deno.mkdirSync(`${dir}/host-networks`, { recursive: true });
    return [
      ...PRIVATE_MOUNTS_SH,
      'mount --bind "$1" "$2" && shift 2 && exec "$@"',
      "sh",
      `${dir}/host-networks`,
      `${dir}/networks`,
      Deno.execPath(),
      "run",
      "-A",
      "--no-check",
      MAIN,
    ];
  }

  /** Starts the pod's server in a fresh namespace (not yet attached). */
  async prepare(key: string): Promise<{ netns: string; prober: Prober }> {
    const netns = uniqueNetnsName("cnp");
    netnsCreate(netns);
    try {
      const p = { netns, prober: await Prober.start(netns, key, [80, 81]) };
      this.#prepared.push(p);
      return p;
    } catch (err) {
      netnsDelete(netns);
      throw err;
    }
  }

  /** Runs CNI ADD for `key` on `node` into a prepared namespace; returns the call, whatever it answered. */
  async call(
    key: string,
    node: number,
    prepared: { netns: string },
    opts: { register?: boolean; delegate?: Record<string, unknown> } = {},
  ): Promise<CniCall> {
    const [ns, name] = key.split("/") as [string, string];
    return await cni(
      this.m.topo.nodes[node]!.netns,
      {
        command: "ADD",
        containerId: `c${this.#counter++}-${name}`,
        netns: `/run/netns/${prepared.netns}`,
        ifname: "eth0",
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=x`,
      },
      this.conf(node, opts.register ?? true, opts.delegate),
      this.#plugin(node),
    );
  }

  /** Runs CNI ADD for `key` on `node` into a prepared namespace; throws unless it succeeded. */
  async add(
    key: string,
    node: number,
    prepared: { netns: string; prober: Prober },
    opts: { register?: boolean } = {},
  ): Promise<CniPod> {
    const call = await this.call(key, node, prepared, opts);
    const addedAt = performance.now();
    if (call.code !== 0) throw new Error(`ADD ${key}: ${call.stdout} ${call.stderr}`);
    const ips = (call.out as { ips: { address: string }[] }).ips;
    const pod: CniPod = { key, ...prepared, ip: ips[0]!.address.split("/")[0]!, addedAt, call };
    this.#pods.push(pod);
    return pod;
  }

  /** Stops the pods' servers and removes their namespaces. */
  async close(): Promise<void> {
    this.#pods = [];
    for (const p of this.#prepared.splice(0)) {
      await p.prober.close();
      netnsDelete(p.netns);
    }
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
