import assert from "node:assert/strict";
import { etcdConnectionCause, explainEtcdError } from "./options.ts";

const OPTS = { endpoints: ["http://192.168.77.1:2379"] };

Deno.test("etcdConnectionCause() names gRPC's and Node's failures in plain words", () => {
  const cases: [string, RegExp | undefined][] = [
    [
      "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 192.168.77.1:2379. " +
      "Resolution note: ",
      /^connection refused by 192\.168\.77\.1:2379: nothing listens there \(etcd stopped, or a wrong port\)$/,
    ],
    ["14 UNAVAILABLE: Connection dropped", /^the connection dropped/],
    ["watch stream lost: 14 UNAVAILABLE: Connection dropped", /^the connection dropped/],
    ["connect EHOSTUNREACH 10.9.9.9:2379", /^no route to 10\.9\.9\.9:2379$/],
    ["4 DEADLINE_EXCEEDED: Deadline exceeded", /^no answer in time: a partition, a firewall/],
    ["watch not established within 5000 ms", /^no answer in time/],
    ["getaddrinfo ENOTFOUND etcd.example", /^its host name does not resolve$/],
    ["Execution prevented because the circuit breaker is open", undefined],
  ];
  for (const [msg, want] of cases) {
    const got = etcdConnectionCause(msg);
    if (want) assert.match(got ?? "", want, msg);
    else assert.equal(got, undefined, msg);
  }
});

Deno.test("explainEtcdError(): the circuit breaker's words give way to the failure before them, with what to check", () => {
  const breaker = new Error("Execution prevented because the circuit breaker is open");
  const last = etcdConnectionCause("connect ECONNREFUSED 192.168.77.1:2379");
  const msg = explainEtcdError(breaker, OPTS, last);
  assert.equal(
    msg,
    "etcd is unreachable at http://192.168.77.1:2379: connection refused by 192.168.77.1:2379: nothing " +
      "listens there (etcd stopped, or a wrong port); check that etcd runs there and that --etcd-endpoints " +
      "names it",
  );
  assert.doesNotMatch(msg, /circuit breaker/);
  assert.match(
    explainEtcdError(breaker, OPTS),
    /: the last attempts failed \(the client pauses a moment\); check/,
  );
  // Not a connection failure: left as it is.
  assert.equal(
    explainEtcdError(new Error("mvcc: required revision has been compacted"), OPTS),
    "mvcc: required revision has been compacted",
  );
});
