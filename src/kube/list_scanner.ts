import { type JsonPath, pruneValue } from "./json_prune.ts";

/**
 * Splits a Kubernetes list answer — `{"kind":"NodeList","metadata":{…},"items":[{…},{…},…]}` — into its
 * items while the bytes arrive. A list of 5000 real Nodes is ~65 MB of JSON (kube-apiserver serves a
 * `resourceVersion=0` list whole, from its watch cache, whatever `limit` says): parsed at once it would
 * be one 65 MB string and an object graph several times that, the agent's peak memory for no reason.
 * Here each item is handed over as its own JSON text (~13 KB), parsed and trimmed by the caller while
 * the next one is still on the wire; the buffer holds one item and one chunk.
 *
 * Only the structure is scanned: strings are skipped with `indexOf` (a quote preceded by an odd number
 * of backslashes is escaped), and each item is walked once (json_prune.ts), which finds its end and cuts
 * what the caller never reads (a Node's images and managedFields) in the same pass.
 *
 * @module
 */

/** Incremental scanner of one list answer (see the module comment). */
export class ListScanner {
  /** @param prune parts of each item cut before it is handed over (json_prune.ts), in the same walk */
  constructor(private readonly prune: readonly JsonPath[] = []) {}

  #buf = "";
  #pos = 0;
  #depth = 0;
  #inString = false;
  #strStart = -1;
  /** The last short string closed at depth 1: the key of the value that opens next. */
  #lastKey = "";
  #inItems = false;
  #itemStart = -1;
  #metaStart = -1;
  #done = false;
  /** The list's `metadata` (resourceVersion, continue), once scanned. */
  metadata: { resourceVersion?: string; continue?: string; remainingItemCount?: number } = {};
  /** Items handed over. */
  items = 0;

  /**
   * Takes `text` (the next piece of the answer) and, once at least `batch` characters wait, scans them,
   * calling `onItem` with each complete item's JSON. Waiting for a few pieces means an item (~13 KB for a
   * Node) is rarely cut by the end of what is buffered, and so rarely walked twice.
   */
  feed(text: string, onItem: (json: string) => void, batch = 0): void {
    this.#buf = this.#buf.length ? this.#buf + text : text;
    if (this.#buf.length - this.#pos < batch) return;
    this.#scan(onItem);
  }

  #scan(onItem: (json: string) => void): void {
    const buf = this.#buf;
    const len = buf.length;
    let pos = this.#pos;
    while (pos < len) {
      if (this.#inString) {
        const q = buf.indexOf('"', pos);
        if (q < 0) {
          pos = len;
          break;
        }
        let b = q - 1;
        while (buf.charCodeAt(b) === 92) b--;
        pos = q + 1;
        if ((q - 1 - b) % 2 === 1) continue; // an escaped quote
        this.#inString = false;
        if (this.#depth === 1 && q - this.#strStart < 64) this.#lastKey = buf.slice(this.#strStart + 1, q);
        continue;
      }
      const c = buf.charCodeAt(pos);
      if (c === 34) { // "
        this.#inString = true;
        this.#strStart = pos;
      } else if (c === 123 || c === 91) { // { [
        if (this.#depth === 1) {
          if (c === 91 && this.#lastKey === "items") this.#inItems = true;
          else if (c === 123 && this.#lastKey === "metadata") this.#metaStart = pos;
        } else if (this.#depth === 2 && this.#inItems && c === 123) {
          // One walk finds the item's end and its cuts; an item not complete yet waits for more.
          const item = pruneValue(buf, pos, this.prune);
          if (!item) {
            this.#itemStart = pos;
            break;
          }
          this.#itemStart = -1;
          onItem(item.text);
          this.items++;
          pos = item.end;
          continue;
        }
        this.#depth++;
      } else if (c === 125 || c === 93) { // } ]
        this.#depth--;
        if (this.#depth === 1) {
          if (this.#metaStart >= 0) {
            this.metadata = JSON.parse(buf.slice(this.#metaStart, pos + 1));
            this.#metaStart = -1;
          } else if (c === 93) this.#inItems = false;
        } else if (this.#depth === 0) this.#done = true;
      }
      pos++;
    }
    this.#compact(pos);
  }

  /** Drops what no pending item, metadata or string still needs. */
  #compact(pos: number): void {
    let keep = pos;
    if (this.#itemStart >= 0) keep = Math.min(keep, this.#itemStart);
    if (this.#metaStart >= 0) keep = Math.min(keep, this.#metaStart);
    if (this.#inString) keep = Math.min(keep, this.#strStart);
    if (keep > 0) {
      this.#buf = this.#buf.slice(keep);
      if (this.#itemStart >= 0) this.#itemStart -= keep;
      if (this.#metaStart >= 0) this.#metaStart -= keep;
      if (this.#inString) this.#strStart -= keep;
    }
    this.#pos = pos - keep;
  }

  /** Characters held now (at most the item being read and the last piece fed). */
  get buffered(): number {
    return this.#buf.length;
  }

  /**
   * Scans what is left (handing over its items) and throws when the answer ended before the list did (a
   * connection cut mid-list).
   */
  finish(onItem: (json: string) => void = () => {}): void {
    this.#scan(onItem);
    if (!this.#done) throw new Error(`the list answer ended early (after ${this.items} items)`);
  }
}
