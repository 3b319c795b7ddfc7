import assert from "node:assert/strict";
import { type HttpServer, type HttpServerOptions, serveHttp } from "./http_server.ts";
import { skipUnless } from "../../tests/helpers/skip.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start(opts: Partial<HttpServerOptions> = {}, handler?: Parameters<typeof serveHttp>[1]): HttpServer {
  return serveHttp(
    { hostname: "127.0.0.1", port: 0, ...opts },
    handler ?? ((req) => ({ status: req.path === "/x" ? 200 : 404, body: `${req.method} ${req.path}\n` })),
  );
}

/** Sends `raw` on a new connection and reads until the server closes it (or `ms` pass). */
async function exchange(port: number, raw: string, ms = 10_000): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await c.write(enc.encode(raw));
    return await readAll(c, ms);
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/** Reads until EOF or `ms` pass; returns the text. */
async function readAll(c: Deno.Conn, ms: number): Promise<string> {
  let text = "";
  const buf = new Uint8Array(65536);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const n = await Promise.race([
      c.read(buf).catch(() => null),
      sleep(end - Date.now()).then(() => -1),
    ]);
    if (n === null || n === -1) break;
    text += dec.decode(buf.subarray(0, n));
  }
  return text;
}

/** Reads until the text matches `re` (or EOF, or `ms` pass); returns the text. */
async function readUntil(c: Deno.Conn, re: RegExp, ms = 10_000): Promise<string> {
  let text = "";
  const buf = new Uint8Array(65536);
  const end = Date.now() + ms;
  while (!re.test(text) && Date.now() < end) {
    const n = await Promise.race([c.read(buf).catch(() => null), sleep(end - Date.now()).then(() => -1)]);
    if (n === null || n === -1) break;
    text += dec.decode(buf.subarray(0, n));
  }
  return text;
}

/** Waits until `ok()` (polling), failing after `ms`. */
async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** True once the server closed `c` (a read returns EOF or fails) within `ms`. */
async function closedWithin(c: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(16);
  const r = await Promise.race([c.read(buf).catch(() => null), sleep(ms).then(() => "open" as const)]);
  return r === null;
}

Deno.test("serveHttp() answers GET and HEAD, strips the query, keeps the connection alive", async () => {
  const s = start();
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await c.write(enc.encode("GET /x?a=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"));
    await c.write(enc.encode("GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    const text = await readAll(c, 10_000);
    c.close();
    const responses = text.split("HTTP/1.1 ").filter(Boolean);
    assert.equal(responses.length, 3, text);
    assert.match(
      responses[0]!,
      /^200 OK\r\n[^]*Content-Length: 7\r\nConnection: keep-alive\r\n\r\nGET \/x\n$/,
    );
    assert.match(responses[1]!, /^200 OK\r\n[^]*Content-Length: 8\r\n[^]*\r\n\r\n$/, "HEAD: headers only");
    assert.match(responses[2]!, /^404 Not Found\r\n[^]*Connection: close\r\n\r\nGET \/nope\n$/);
    assert.equal(s.stats.requests, 3);
    // fetch() (a real client) works too, absolute-form targets included.
    const r = await fetch(`http://127.0.0.1:${s.port}/x`);
    assert.equal(await r.text(), "GET /x\n");
    const abs = await exchange(s.port, `GET http://127.0.0.1:${s.port}/x HTTP/1.0\r\n\r\n`);
    assert.match(abs, /^HTTP\/1\.1 200 OK[^]*Connection: close\r\n\r\nGET \/x\n$/);
  } finally {
    await s.shutdown();
  }
});

Deno.test("serveHttp() refuses what it does not serve: other methods, bad request lines, huge heads", async () => {
  const s = start({ maxHeaderBytes: 1024 });
  try {
    assert.match(
      await exchange(s.port, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
      /^HTTP\/1\.1 405 [^]*Allow: GET, HEAD/,
    );
    assert.match(await exchange(s.port, "garbage\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await exchange(s.port, "GET /x HTTP/2.0\r\n\r\n"), /^HTTP\/1\.1 505 /);
    assert.match(await exchange(s.port, "GET /x HTTP/1.1\r\nno colon here\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(
      await exchange(s.port, `GET /x HTTP/1.1\r\nX: ${"a".repeat(5000)}\r\n\r\n`),
      /^HTTP\/1\.1 431 /,
    );
    // A GET with a body is answered, then the connection is closed (its body is never read as a request).
    assert.match(
      await exchange(s.port, "GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /"),
      /^HTTP\/1\.1 200 [^]*Connection: close\r\n\r\nGET \/x\n$/,
    );
    assert.equal(s.stats.errors.badRequest, 5);
    // Still serving.
    assert.equal(await (await fetch(`http://127.0.0.1:${s.port}/x`)).text(), "GET /x\n");
  } finally {
    await s.shutdown();
  }
});

Deno.test("serveHttp() closes a connection that sends nothing within the idle timeout", async () => {
  const s = start({ idleTimeoutMs: 300 });
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    const t0 = Date.now();
    assert.ok(await closedWithin(c, 10_000), "closed");
    const ms = Date.now() - t0;
    c.close();
    assert.ok(ms >= 250, `closed after ${ms} ms, not before the idle timeout`);
    assert.equal(s.stats.dropped.idleTimeout, 1);
    // Between keep-alive requests too.
    const k = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await k.write(enc.encode("GET /x HTTP/1.1\r\n\r\n"));
    const text = await readAll(k, 10_000); // until the server closes it, idle after the answer
    k.close();
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.equal(s.stats.dropped.idleTimeout, 2);
  } finally {
    await s.shutdown();
  }
});

Deno.test("serveHttp() closes a connection whose headers trickle in beyond the header timeout (slow loris)", async () => {
  const s = start({ headerTimeoutMs: 400 });
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await c.write(enc.encode("GET /x HTTP/1.1\r\n"));
    let closed = false;
    const t0 = Date.now();
    // One header byte every 100 ms keeps the connection busy but never finishes the head (for 30 s at
    // most: a server that let the trickle keep it open would hold it all that time).
    for (let i = 0; i < 300 && !closed; i++) {
      try {
        await c.write(enc.encode("X"));
      } catch {
        closed = true;
      }
      closed ||= await closedWithin(c, 100);
    }
    c.close();
    assert.ok(closed, `the server closed it (after ${Date.now() - t0} ms)`);
    assert.equal(s.stats.dropped.headerTimeout, 1);
  } finally {
    await s.shutdown();
  }
});

Deno.test("serveHttp() holds at most maxConnections: idle ones are evicted for new ones, requests still served", async () => {
  const s = start({ maxConnections: 4 });
  const idle: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 20; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port: s.port }));
    await until("20 accepted", () => s.stats.accepted >= 20);
    assert.ok(s.stats.open <= 4, `${s.stats.open} open`);
    assert.equal(s.stats.accepted, 20);
    assert.equal(s.stats.dropped.evicted, 16);
    // The newest four are still open; the first sixteen were closed by the server.
    let closed = 0;
    for (const c of idle) if (await closedWithin(c, 50)) closed++;
    assert.equal(closed, 16);
    // A real request gets through (it evicts an idle connection).
    assert.equal(await (await fetch(`http://127.0.0.1:${s.port}/x`)).text(), "GET /x\n");
  } finally {
    for (const c of idle) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await s.shutdown();
  }
});

Deno.test("serveHttp() refuses a connection when every slot is busy, not idle", async () => {
  const gate = Promise.withResolvers<void>();
  let handling = 0;
  const s = start({ maxConnections: 2 }, async () => {
    handling++;
    await gate.promise;
    return { status: 200, body: "late\n" };
  });
  try {
    const busy = await Promise.all([0, 1].map(async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
      await c.write(enc.encode("GET /x HTTP/1.1\r\n\r\n"));
      return c;
    }));
    await until("both requests in the handler", () => handling === 2);
    const extra = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    assert.ok(await closedWithin(extra, 10_000), "refused");
    extra.close();
    assert.equal(s.stats.dropped.limit, 1);
    gate.resolve();
    for (const c of busy) {
      assert.match(await readUntil(c, /late\n$/), /^HTTP\/1\.1 200 [^]*late\n$/);
      c.close();
    }
  } finally {
    gate.resolve();
    await s.shutdown();
  }
});

Deno.test("serveHttp() answers 500 when the handler throws, and a client reset is counted, not fatal", async () => {
  let n = 0;
  const s = start({}, (req) => {
    if (req.path === "/boom") throw new Error("boom");
    n++;
    // 16 MiB does not fit in the loopback socket buffers: still being written when the client resets.
    return { status: 200, body: req.path === "/big" ? "x".repeat(16 << 20) : "fine\n" };
  });
  try {
    assert.match(
      await exchange(s.port, "GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n"),
      /^HTTP\/1\.1 500 /,
    );
    assert.equal(s.stats.errors.handler, 1);
    for (let i = 0; i < 5; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
      await c.write(enc.encode("GET /big HTTP/1.1\r\n\r\n"));
      await c.read(new Uint8Array(1024)); // the answer has begun
      c.close(); // unread data: the kernel sends a reset, the server's write fails
    }
    await until("a failed write", () => s.stats.errors.io >= 1);
    const r = await fetch(`http://127.0.0.1:${s.port}/ok`);
    assert.equal(await r.text(), "fine\n");
    assert.equal(n, 6);
  } finally {
    await s.shutdown();
  }
});

Deno.test("serveHttp(): a write that stalls (the client never reads) is cut by the write timeout", async () => {
  const s = start({ writeTimeoutMs: 300 }, () => ({ status: 200, body: "y".repeat(32 << 20) }));
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await c.write(enc.encode("GET /x HTTP/1.1\r\n\r\n"));
    // Not reading: the socket buffers fill, the write blocks, the timer cuts it (polled: a loaded
    // machine takes a while to even build 32 MiB).
    const t0 = Date.now();
    while ((s.stats.dropped.writeTimeout === 0 || s.stats.open > 0) && Date.now() - t0 < 10_000) {
      await sleep(50);
    }
    assert.equal(s.stats.dropped.writeTimeout, 1);
    assert.equal(s.stats.open, 0);
    assert.equal(s.stats.errors.io, 0, "a cut write is a timeout, not an I/O error");
    c.close();
  } finally {
    await s.shutdown();
  }
});

Deno.test({
  name: "serveHttp() under a 128-fd limit survives 1000 connections and EMFILE, and still answers",
  ignore: skipUnless(hasPrlimit(), "prlimit (util-linux) is not installed"),
  async fn() {
    const dir = await Deno.makeTempDir();
    const script = `${dir}/serve.ts`;
    const server = new URL("./http_server.ts", import.meta.url).href;
    // The child holds 100 descriptors of its own so the cap alone cannot keep it clear of EMFILE. It
    // listens for SIGTERM first, as `weft agent` does: Deno 2.9.6 panics (ext/signals) when its signal
    // registry is first set up while no descriptor is free, which a process spawned by Deno does lazily.
    await Deno.writeTextFile(
      script,
      `import { serveHttp } from ${JSON.stringify(server)};
      Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
      const hog = []; for (let i = 0; i < 100; i++) hog.push(Deno.openSync("/dev/null"));
      const s = serveHttp({ hostname: "127.0.0.1", port: 0, maxConnections: 64 },
        () => ({ status: 200, body: JSON.stringify(s.stats) }));
      console.log(s.port);`,
    );
    const child = new Deno.Command("prlimit", {
      args: ["--nofile=128:128", Deno.execPath(), "run", "-A", "--no-check", "--config", CONFIG, script],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const conns: Deno.Conn[] = [];
    try {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      const port = Number(dec.decode(value).trim());
      reader.releaseLock();
      let refused = 0;
      for (let i = 0; i < 1000; i++) {
        try {
          conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        } catch {
          refused++;
        }
      }
      // Alive, and a fresh request is answered with the counters (asked again until the server has
      // accepted what the kernel queued for it: a loaded machine takes its time).
      const end = Date.now() + 30_000;
      let stats = JSON.parse(await (await fetch(`http://127.0.0.1:${port}/`)).text());
      while (stats.accepted < 900 && Date.now() < end) {
        await sleep(200);
        stats = JSON.parse(await (await fetch(`http://127.0.0.1:${port}/`)).text());
      }
      console.log(
        `  1000 connections (${refused} refused by the kernel): accepted ${stats.accepted}, open ${stats.open}, ` +
          `evicted ${stats.dropped.evicted}, accept errors ${stats.errors.accept}`,
      );
      assert.ok(stats.open <= 64);
      assert.ok(stats.accepted >= 900, `accepted ${stats.accepted}`);
      const st = await Promise.race([child.status, sleep(100).then(() => undefined)]);
      assert.equal(st, undefined, "the server process is still running");
    } finally {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      try {
        child.kill("SIGKILL");
      } catch { /* exited: the assertion above says so */ }
      await child.status;
      const err = await new Response(child.stderr).text().catch(() => "");
      if (err.trim()) console.log(`  child stderr: ${err.slice(0, 2000)}`);
      await child.stdout.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function hasPrlimit(): boolean {
  try {
    return new Deno.Command("prlimit", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}
