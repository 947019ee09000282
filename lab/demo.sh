#!/bin/bash
# lab/demo.sh: the in-guest half of `make demo`: load the policy modules, bring the
# network up for qemu's port forward, set the demo up, and keep the guest running.
set -euo pipefail
semodule -i /in/policy/*.pp
dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set "$dev" up
ip addr add 10.0.2.15/24 dev "$dev"
ip route add default via 10.0.2.2
bash /src/lab/demo-setup.sh
echo "demo: guest ready"
exec sleep infinity
