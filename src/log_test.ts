import assert from "node:assert/strict";
import type { Logger, LogRecord } from "@logtape/logtape";
import { formatJson, formatText, RepeatedFailure } from "./log.ts";

/** A record as logtape makes it for `logger.info(template, props)`. */
function record(template: string, properties: Record<string, unknown>): LogRecord {
  const message: unknown[] = [];
  let last = 0;
  for (const m of template.matchAll(/\{([^{}]+)\}/g)) {
    message.push(template.slice(last, m.index), properties[m[1]!]);
    last = m.index! + m[0].length;
  }
  message.push(template.slice(last));
  return {
    category: ["weft", "subnet"],
    level: "info",
    message,
    rawMessage: template,
    timestamp: Date.parse("2026-01-02T03:04:05Z"),
    properties,
  };
}

Deno.test("formatText() prints a value once: those in the message are not repeated as key=value", () => {
  const line = formatText(
    record("acquired lease {key} for {ip}", { key: "10.244.1.0-24", ip: "192.168.100.11", how: "reused" }),
  );
  assert.equal(
    line,
    '2026-01-02T03:04:05.000Z INFO    weft.subnet: acquired lease 10.244.1.0-24 for 192.168.100.11 how="reused"\n',
  );
  assert.equal(line.match(/192\.168\.100\.11/g)!.length, 1);
  assert.doesNotMatch(formatText(record("all: {*}", { a: 1, b: 2 })), / a=1/);
});

Deno.test("formatJson() keeps every property as its own field, beside ts, level, logger and msg", () => {
  const o = JSON.parse(formatJson(record("lease {key} renewed", { key: "10.244.1.0-24", ttl: 60 })));
  assert.deepEqual(o, {
    key: "10.244.1.0-24",
    ttl: 60,
    ts: "2026-01-02T03:04:05.000Z",
    level: "info",
    logger: "weft.subnet",
    msg: "lease 10.244.1.0-24 renewed",
  });
  // A property cannot overwrite the record's own fields.
  assert.equal(JSON.parse(formatJson(record("x", { level: "forged" }))).level, "info");
});

/** A logger that keeps what it is given, rendered as formatText renders the message. */
function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (template: string, props: Record<string, unknown>) =>
    lines.push(`${level} ${formatText(record(template, props)).slice(46, -1)}`);
  return { logger: { warn: at("warn"), info: at("info") } as unknown as Logger, lines };
}

Deno.test("RepeatedFailure: the first failure in full with its fix, then at doubling gaps with a count, then recovery", () => {
  let now = 0;
  const { logger, lines } = capture();
  const f = new RepeatedFailure(logger, {
    what: "lease watch",
    fix: "check etcd {and} --etcd-endpoints",
    now: () => now,
  });
  // A retry every 5 s for 10 minutes: 120 attempts.
  for (let i = 0; i < 120; i++, now += 5000) {
    f.failed("etcd unreachable at http://10.0.0.1:2379: connection refused");
  }
  assert.equal(f.attempts, 120);
  assert.deepEqual(lines, [
    "warn lease watch: etcd unreachable at http://10.0.0.1:2379: connection refused; check etcd {and} --etcd-endpoints",
    "warn lease watch: still failing since 1970-01-01T00:00:00.000Z (13 attempts, 12 not logged; next report in 2m 0s): etcd unreachable at http://10.0.0.1:2379: connection refused; check etcd {and} --etcd-endpoints",
    "warn lease watch: still failing since 1970-01-01T00:00:00.000Z (37 attempts, 24 not logged; next report in 4m 0s): etcd unreachable at http://10.0.0.1:2379: connection refused; check etcd {and} --etcd-endpoints",
    "warn lease watch: still failing since 1970-01-01T00:00:00.000Z (85 attempts, 48 not logged; next report in 8m 0s): etcd unreachable at http://10.0.0.1:2379: connection refused; check etcd {and} --etcd-endpoints",
  ]);
  f.succeeded();
  assert.equal(lines.at(-1), "info lease watch: works again after 120 failed attempts over 10m 0s");
  assert.equal(f.failing, false);
  f.succeeded(); // no second "works again"
  f.failed("again");
  assert.equal(lines.length, 6);
  assert.equal(
    lines.at(-1),
    "warn lease watch: again; check etcd {and} --etcd-endpoints",
    "a new outage starts over",
  );
});
