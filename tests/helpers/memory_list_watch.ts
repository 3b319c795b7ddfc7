/**
 * An in-memory stand-in for the Kubernetes API's list and watch (the {@linkcode ListWatchClient}
 * shape), for unit tests of informer consumers: one resourceVersion counter, objects per collection
 * path, watches fed as objects change, and a switch that makes the API unreachable (lists and watches
 * fail, open watches break). Tests of the real wire protocol use tests/helpers/kube_api_server.ts.
 *
 * @module
 */
import {
  type KubeObject,
  type ListWatchClient,
  objectKey,
  type WatchEvent,
} from "../../src/policy/informer.ts";

interface Watcher {
  path: string;
  push(ev: WatchEvent<KubeObject>): void;
  fail(err: Error): void;
}

/** The in-memory API. */
export class MemoryListWatch implements ListWatchClient {
  #rv = 1;
  #data = new Map<string, Map<string, KubeObject>>();
  #watchers = new Set<Watcher>();
  /** While true, every call fails and open watches break. */
  #down = false;
  /** Calls made, for assertions. */
  calls = { list: 0, watch: 0 };

  /** Makes the API unreachable (breaking open watches) or reachable again. */
  setDown(down: boolean): void {
    this.#down = down;
    if (down) { for (const w of [...this.#watchers]) w.fail(new Error("connection refused")); }
  }

  #coll(path: string): Map<string, KubeObject> {
    let c = this.#data.get(path);
    if (!c) this.#data.set(path, c = new Map());
    return c;
  }

  /** Creates or replaces an object (a new resourceVersion); watchers see ADDED or MODIFIED. */
  put(path: string, obj: KubeObject): void {
    const o = structuredClone(obj);
    o.metadata.resourceVersion = String(++this.#rv);
    const c = this.#coll(path);
    const type = c.has(objectKey(o)) ? "MODIFIED" : "ADDED";
    c.set(objectKey(o), o);
    this.#emit(path, { type, object: structuredClone(o) });
  }

  /** Deletes an object by `ns/name` (watchers see DELETED). */
  delete(path: string, key: string): void {
    const c = this.#coll(path);
    const o = c.get(key);
    if (!o) throw new Error(`no ${key} in ${path}`);
    c.delete(key);
    o.metadata.resourceVersion = String(++this.#rv);
    this.#emit(path, { type: "DELETED", object: o });
  }

  #emit(path: string, ev: WatchEvent<KubeObject>): void {
    if (this.#down) return; // nobody connected hears it; the next list will
    for (const w of this.#watchers) if (w.path === path) w.push(ev);
  }

  list<T>(path: string): Promise<{ items: T[]; resourceVersion: string }> {
    this.calls.list++;
    if (this.#down) return Promise.reject(new Error("connection refused"));
    const items = [...this.#coll(path).values()].map((o) => structuredClone(o) as unknown as T);
    return Promise.resolve({ items, resourceVersion: String(this.#rv) });
  }

  watch<T>(
    path: string,
    opts: { resourceVersion?: string; signal: AbortSignal; onOpen?: () => void },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    this.calls.watch++;
    if (this.#down) return Promise.reject(new Error("connection refused"));
    // This stand-in keeps no history: a resume point older than now is "gone" unless nothing changed.
    if (opts.resourceVersion !== String(this.#rv)) {
      return Promise.reject(Object.assign(new Error("too old resource version"), { code: 410 }));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Watcher = {
        path,
        push: (ev) => onEvent(ev as unknown as WatchEvent<T>),
        fail: (err) => {
          this.#watchers.delete(w);
          reject(err);
        },
      };
      this.#watchers.add(w);
      opts.onOpen?.(); // established, as src/kube's client says once the server's headers arrive
      opts.signal.addEventListener("abort", () => {
        this.#watchers.delete(w);
        resolve();
      }, { once: true });
    });
  }
}
