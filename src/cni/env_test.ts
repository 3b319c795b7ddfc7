import assert from "node:assert/strict";
import { parseCniArgs, readCniEnv } from "./env.ts";
import { CniError } from "./types.ts";

function envOf(vars: Record<string, string>): (k: string) => string | undefined {
  return (k) => vars[k];
}

const ADD = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc", CNI_NETNS: "/run/netns/p", CNI_IFNAME: "eth0" };

function code(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err.code;
    throw err;
  }
  return 0;
}

Deno.test("readCniEnv() takes kubelet's environment, CNI_ARGS included", () => {
  const e = readCniEnv(envOf({
    ...ADD,
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
    CNI_PATH: "/opt/cni/bin",
  }));
  assert.equal(e.command, "ADD");
  assert.deepEqual(e.args, {
    IgnoreUnknown: "1",
    K8S_POD_NAMESPACE: "default",
    K8S_POD_NAME: "web-0",
    K8S_POD_INFRA_CONTAINER_ID: "abc",
  });
  assert.equal(e.path, "/opt/cni/bin");
});

Deno.test("readCniEnv() accepts an empty CNI_NETNS on DEL only (containerd's ctr sends one)", () => {
  assert.equal(readCniEnv(envOf({ ...ADD, CNI_COMMAND: "DEL", CNI_NETNS: "" })).netns, "");
  assert.equal(code(() => readCniEnv(envOf({ ...ADD, CNI_NETNS: "" }))), 4);
  assert.equal(code(() => readCniEnv(envOf({ ...ADD, CNI_COMMAND: "CHECK", CNI_NETNS: "" }))), 4);
});

Deno.test("readCniEnv() needs no container for VERSION, GC and STATUS", () => {
  for (const c of ["VERSION", "GC", "STATUS"]) assert.equal(readCniEnv(envOf({ CNI_COMMAND: c })).command, c);
});

Deno.test("readCniEnv() answers code 4 for every bad variable", () => {
  const bad: Record<string, string>[] = [
    {},
    { ...ADD, CNI_COMMAND: "add" },
    { ...ADD, CNI_CONTAINERID: "" },
    { ...ADD, CNI_CONTAINERID: "../../etc" },
    { ...ADD, CNI_CONTAINERID: "_leading" },
    { ...ADD, CNI_CONTAINERID: "a b" },
    { ...ADD, CNI_IFNAME: "" },
    { ...ADD, CNI_IFNAME: "a/b" },
    { ...ADD, CNI_IFNAME: ".." },
    { ...ADD, CNI_IFNAME: "sixteen-chars-xx" },
    { ...ADD, CNI_ARGS: "novalue" },
    { ...ADD, CNI_ARGS: "=v" },
  ];
  for (const vars of bad) assert.equal(code(() => readCniEnv(envOf(vars))), 4, JSON.stringify(vars));
});

Deno.test("parseCniArgs() keeps '=' inside values and skips empty pairs", () => {
  assert.deepEqual(parseCniArgs("A=b=c;;B="), { A: "b=c", B: "" });
});
