#!/bin/bash
# trusted/testdata/os-policy-check.sh (make check-policy-os): in the lab guest, with ONLY
# the shipped sepgadm module loaded (the lab test module grants sepgadm_proxy_t extra OS
# rights, so make test-lab cannot show this), run the proxy as a systemd service from
# /usr/sbin/sepgadm (sepgadm_proxy_exec_t), peer auth on its Unix socket, config and
# credential in /etc/sepgadm, session log in /var/log/sepgadm, and list every AVC denial
# of sepgadm_proxy_t. The client (initrc_t, not a tenant) is refused by the switch: that
# shows the proxy read its peer label. Seen 2026-11-23: no denials.
set -u
semodule -i /in/policy/sepgadm.pp
psql -X -q -d postgres -c "CREATE DATABASE ostest"
sepgadm install -d "dbname=ostest" --proxy-role postgres
mkdir -p /etc/sepgadm /var/log/sepgadm /run/sepgadm
sepgadm credential rotate -d "dbname=ostest" --out /etc/sepgadm/credential
cat >/etc/sepgadm/os.toml <<'TOML'
credential_file = "/etc/sepgadm/credential"
session_log = "/var/log/sepgadm/sessions.jsonl"
[peer_map]
root = ["postgres"]
[[listen]]
unix_socket_dir = "/run/sepgadm"
port = 6432
auth = "peer"
[server]
host = "/var/run/postgresql"
TOML
install -m 0755 /usr/local/bin/sepgadm /usr/sbin/sepgadm
restorecon -F /usr/sbin/sepgadm; restorecon -RF /etc/sepgadm /var/log/sepgadm /run/sepgadm
ls -Z /usr/sbin/sepgadm /etc/sepgadm /var/log/sepgadm
start=$(date +%s)
systemd-run --unit=sepgadm-os --collect /usr/sbin/sepgadm proxy --config /etc/sepgadm/os.toml
sleep 3
pid=$(systemctl show -p MainPID --value sepgadm-os.service)
echo "proxy pid $pid: $(cat /proc/$pid/attr/current 2>/dev/null | tr -d '\0')"
ls -Z /run/sepgadm /var/log/sepgadm
psql -X -At "host=/run/sepgadm port=6432 dbname=ostest user=postgres" -c "SELECT sepgsql_getcon()"
echo "psql exit $?"
sleep 1
journalctl -u sepgadm-os --no-pager | tail -5
echo "--- AVC denials for sepgadm_proxy_t since start:"
ausearch -m AVC,USER_AVC -ts recent 2>/dev/null | grep -E "sepgadm_proxy_t" | grep -o 'avc:.*' | sed 's/ pid=[0-9]*//; s/ ino=[0-9]*//' | sort | uniq -c | head -30
grep "SELinux: denied" /var/lib/postgresql/15/main/log/*.log | grep sepgadm_proxy_t | head -5
n=$(ausearch -m AVC,USER_AVC -ts recent 2>/dev/null | grep -c "scontext=system_u:system_r:sepgadm_proxy_t")
journalctl -u sepgadm-os --no-pager | grep -q '"context":"system_u:system_r:initrc_t:s0"' || { echo "the proxy did not use the peer label"; exit 1; }
[ "$n" = 0 ] || { echo "$n AVC denials for sepgadm_proxy_t"; exit 1; }
echo "os-policy-check: proxy ran with the shipped module alone, 0 denials"
