/**
 * `./dev` touches only what it installs: its apt step (install_apt, sourced from ./dev) is run against
 * fake `apt-get`, `dpkg`, `dpkg-query` and `systemctl` (or fake /etc/init.d scripts) that behave as
 * Debian's do — installing etcd-server or containerd starts and enables their service — and must leave
 * every service that ran or was enabled before exactly as it was, and stop and disable only what its own
 * install started or enabled, saying so. tools/check_dev_services.sh checks the same on a real systemd
 * machine.
 */
import assert from "node:assert/strict";

const DEV = new URL("../dev", import.meta.url).pathname;

/** What the fake machine's packages ship: package → service (a systemd unit, or an init script name). */
const SHIPS: Record<string, string> = { "etcd-server": "etcd", "containerd": "containerd" };

interface Machine {
  /** Installed packages. */
  installed: string[];
  /** Running services (bare names: etcd, containerd). */
  running: string[];
  /** Services enabled at boot (systemd only here). */
  enabled: string[];
}

const FAKES: Record<string, string> = {
  // dpkg-query -W -f='${Status}' PKG
  "dpkg-query": `#!/bin/bash
grep -qxF "\${@: -1}" "$FAKE/installed" && echo "install ok installed" || exit 1`,
  // dpkg -L PKG…: the service files the packages ship.
  "dpkg": `#!/bin/bash
shift
for p in "$@"; do
  case "$p" in
    etcd-server) s=etcd ;; containerd) s=containerd ;; *) s= ;;
  esac
  echo "/usr/share/doc/$p"
  [ -n "$s" ] && { echo "/lib/systemd/system/$s.service"; echo "/etc/init.d/$s"; }
done
exit 0`,
  // apt-get update | install -y … PKG…: Debian's postinst starts and enables what the package ships.
  "apt-get": `#!/bin/bash
[ "$1" = update ] && exit 0
for p in "$@"; do
  case "$p" in -*|install) continue ;; esac
  echo "$p" >>"$FAKE/installed"
  case "$p" in etcd-server) s=etcd ;; containerd) s=containerd ;; *) s= ;; esac
  [ -n "$s" ] && { echo "$s" >>"$FAKE/running"; echo "$s" >>"$FAKE/enabled"; }
done
echo "apt-get $*" >>"$FAKE/calls"`,
  // systemctl list-units / list-unit-files / stop / disable, over the state files.
  "systemctl": `#!/bin/bash
echo "systemctl $*" >>"$FAKE/calls"
case "$1" in
  list-units) sort -u "$FAKE/running" | sed 's/$/.service loaded active running x/' ;;
  list-unit-files) sort -u "$FAKE/enabled" | sed 's/$/.service enabled enabled/' ;;
  stop) grep -vxF "\${2%.service}" "$FAKE/running" >"$FAKE/r" || true; mv "$FAKE/r" "$FAKE/running" ;;
  disable) s="\${@: -1}"; grep -vxF "\${s%.service}" "$FAKE/enabled" >"$FAKE/e" || true; mv "$FAKE/e" "$FAKE/enabled" ;;
  *) exit 1 ;;
esac`,
};

/** An init script of the fake machine (status from the state file; stop removes it there). */
const INIT_SCRIPT = (name: string) =>
  `#!/bin/bash
case "$1" in
  status) grep -qxF ${name} "$FAKE/running" ;;
  stop) echo "init.d ${name} stop" >>"$FAKE/calls"; grep -vxF ${name} "$FAKE/running" >"$FAKE/r" || true; mv "$FAKE/r" "$FAKE/running" ;;
  *) exit 3 ;;
esac`;

/**
 * Runs ./dev's install_apt for `packages` on a fake machine in state `m` (systemd, or SysV init
 * scripts); returns the machine afterwards, the commands that changed it, and what ./dev said.
 */
async function installApt(init: "systemd" | "sysv", packages: string[], m: Machine) {
  const dir = await Deno.makeTempDir({ prefix: "weft-dev-" });
  try {
    await Deno.mkdir(`${dir}/bin`);
    for (const [name, text] of Object.entries(FAKES)) {
      await Deno.writeTextFile(`${dir}/bin/${name}`, text, { mode: 0o755 });
    }
    await Deno.mkdir(`${dir}/init.d`);
    for (const s of Object.values(SHIPS)) {
      await Deno.writeTextFile(`${dir}/init.d/${s}`, INIT_SCRIPT(s), { mode: 0o755 });
    }
    for (const k of ["installed", "running", "enabled"] as const) {
      await Deno.writeTextFile(`${dir}/${k}`, m[k].map((x) => `${x}\n`).join(""));
    }
    await Deno.writeTextFile(`${dir}/calls`, "");
    const out = await new Deno.Command("bash", {
      args: ["-c", `source "${DEV}" && APT_PACKAGES=(${packages.join(" ")}) && install_apt`],
      env: {
        PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
        FAKE: dir,
        WEFT_DEV_INIT: init,
        WEFT_DEV_INITD: `${dir}/init.d`,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const stderr = dec.decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const read = async (k: string) =>
      [...new Set((await Deno.readTextFile(`${dir}/${k}`)).split("\n"))].filter(Boolean).sort();
    return {
      running: await read("running"),
      enabled: await read("enabled"),
      // What changed a service: stop, disable (list-units and list-unit-files only look).
      changes: (await read("calls")).filter((c) => /^(systemctl (stop|disable)|init\.d)/.test(c)),
      // deno-lint-ignore no-control-regex -- ./dev's bold "==>" lines
      said: stderr.replace(/\x1b\[[0-9;]*m/g, ""),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("./dev leaves etcd and containerd running and enabled when they were, whatever it installs", async () => {
  for (const init of ["systemd", "sysv"] as const) {
    // etcd and containerd run as services already (etcd from the user's own unit: etcd-server is not installed).
    const before = {
      installed: ["containerd"],
      running: ["containerd", "etcd"],
      enabled: ["containerd", "etcd"],
    };
    const after = await installApt(init, ["containerd", "etcd-server", "iperf3"], before);
    assert.deepEqual(after.changes, [], `${init}: nothing stopped or disabled`);
    assert.deepEqual(after.running, ["containerd", "etcd"], init);
    if (init === "systemd") assert.deepEqual(after.enabled, ["containerd", "etcd"], init);
    assert.match(after.said, /installing apt packages: etcd-server iperf3/);
    assert.doesNotMatch(after.said, /stopping|disabling/);
  }
});

Deno.test("./dev stops and disables only the services its own install started, and says so", async () => {
  // systemd: etcd-server's install starts and enables etcd; containerd ran before and is left alone.
  const sd = await installApt("systemd", ["containerd", "etcd-server"], {
    installed: ["containerd"],
    running: ["containerd"],
    enabled: [],
  });
  assert.deepEqual(sd.changes, ["systemctl disable --quiet etcd.service", "systemctl stop etcd.service"]);
  assert.deepEqual(sd.running, ["containerd"]);
  assert.deepEqual(sd.enabled, []);
  assert.match(sd.said, /stopping etcd\.service: this install started it/);
  assert.match(sd.said, /disabling etcd\.service: this install enabled it at boot/);
  // No systemd (a container): the init script this install started is stopped through it.
  const sysv = await installApt("sysv", ["etcd-server", "containerd"], {
    installed: [],
    running: [],
    enabled: [],
  });
  assert.deepEqual(sysv.changes, ["init.d containerd stop", "init.d etcd stop"]);
  assert.deepEqual(sysv.running, []);
  assert.match(sysv.said, /stopping etcd: this install started it/);
});

Deno.test("./dev changes nothing when every package is installed", async () => {
  const m = { installed: ["containerd", "etcd-server"], running: ["etcd"], enabled: [] };
  const after = await installApt("systemd", ["containerd", "etcd-server"], m);
  assert.deepEqual(after.changes, []);
  assert.deepEqual(after.running, ["etcd"]);
  assert.equal(after.said, "");
});
