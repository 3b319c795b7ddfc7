#!/usr/bin/env bash
# Checks on a real machine that `./dev` touches only what it installs: with etcd and containerd running
# as systemd services, `./dev test`'s setup (`./dev setup`, which runs an apt install whenever a package
# of its list is missing) leaves both running and enabled.
#
#   sudo tools/check_dev_services.sh
#
# What it does to the machine, and undoes: starts and enables etcd and containerd if they were not
# (the premise), removes the small `time` package so that ./dev has something to install, runs
# `./dev setup`, checks, then puts etcd, containerd and `time` back as they were.
# Exit 0: passed; 1: failed; 77: cannot run here (says why: no root, no systemd, no apt).
# tests/dev_services_test.ts checks the same logic against fake apt/systemctl on any machine.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

cannot() {
  echo "check_dev_services: cannot run here: $*" >&2
  exit 77
}
[ "$(id -u)" = 0 ] || cannot "needs root (it starts services and runs ./dev setup)"
[ -d /run/systemd/system ] || cannot "no systemd (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)); tests/dev_services_test.ts covers the logic"
command -v apt-get >/dev/null && command -v systemctl >/dev/null || cannot "needs apt-get and systemctl"

SERVICES=(etcd containerd)
# The premise: both packages installed, both services running and enabled. Remember what to undo.
to_stop=() to_disable=()
had_time=1
for svc in "${SERVICES[@]}"; do
  systemctl cat "$svc.service" >/dev/null 2>&1 || cannot "$svc.service is not installed (apt install etcd-server containerd first)"
  systemctl is-active --quiet "$svc" || to_stop+=("$svc")
  systemctl is-enabled --quiet "$svc" || to_disable+=("$svc")
done
dpkg-query -W -f='${Status}' time 2>/dev/null | grep -q "install ok installed" || had_time=0
restore() {
  for svc in "${to_stop[@]}"; do systemctl stop "$svc" || true; done
  for svc in "${to_disable[@]}"; do systemctl disable --quiet "$svc" || true; done
  if [ "$had_time" = 0 ]; then apt-get remove -y -qq time >/dev/null 2>&1 || true; fi
}
trap restore EXIT
for svc in "${SERVICES[@]}"; do systemctl enable --now --quiet "$svc"; done

# Something for ./dev to install: `time` (in its package list, no service).
if [ "$had_time" = 1 ]; then DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq time >/dev/null; fi
echo "check_dev_services: etcd and containerd running and enabled; \`time\` removed; running ./dev setup" >&2
./dev setup

failed=0
for svc in "${SERVICES[@]}"; do
  state="$(systemctl is-active "$svc" || true) / $(systemctl is-enabled "$svc" || true)"
  if [ "$state" = "active / enabled" ]; then
    echo "ok: $svc is still $state"
  else
    echo "FAILED: $svc is $state after ./dev setup (it was active / enabled)"
    failed=1
  fi
done
dpkg-query -W -f='${Status}' time | grep -q "install ok installed" || { echo "FAILED: ./dev setup did not install time"; failed=1; }
# `time` was there before: keep it (the EXIT trap removes it only when it was not).
exit "$failed"
