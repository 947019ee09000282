#!/bin/bash
# lab/demo-setup.sh: sets the sepgadm demo up inside the lab guest (run as root, with
# the sepgadm policy module and the lab test module already loaded): database demo,
# users alice and bob (SCRAM passwords alice and bob), tables alice_notes and bob_notes
# labelled for their tenants and readable by both users as far as GRANTs go (so a
# denial is sepgsql's alone), `sepgadm install`, a credential, and the proxy started by
# systemd as /usr/sbin/sepgadm (sepgadm_proxy_exec_t), so it runs in sepgadm_proxy_t,
# on 0.0.0.0:6432 (SCRAM) and /run/sepgadm (trust). Used by make demo and a lab test.
set -euo pipefail
export PGHOST=/var/run/postgresql PGUSER=postgres

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
DROP DATABASE IF EXISTS demo;
CREATE DATABASE demo;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'alice') THEN CREATE ROLE alice LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bob') THEN CREATE ROLE bob LOGIN; END IF;
END $$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE alice PASSWORD 'alice';
ALTER ROLE bob PASSWORD 'bob';
SQL
sepgadm install -d "dbname=demo" --proxy-role alice --proxy-role bob --proxy-role postgres
mkdir -p /etc/sepgadm /var/log/sepgadm /run/sepgadm
rm -f /etc/sepgadm/credential
sepgadm credential rotate -d "dbname=demo" --out /etc/sepgadm/credential
psql -X -q -v ON_ERROR_STOP=1 -d demo <<'SQL'
CREATE TABLE alice_notes (note text);
CREATE TABLE bob_notes (note text);
INSERT INTO alice_notes VALUES ('alice: buy milk'), ('alice: call bob');
INSERT INTO bob_notes VALUES ('bob: fix the boiler');
GRANT SELECT ON alice_notes, bob_notes TO alice, bob;
SECURITY LABEL FOR selinux ON TABLE alice_notes IS 'system_u:object_r:sepgadm_lab_a_table_t:s0';
SECURITY LABEL FOR selinux ON COLUMN alice_notes.note IS 'system_u:object_r:sepgadm_lab_a_table_t:s0';
SECURITY LABEL FOR selinux ON TABLE bob_notes IS 'system_u:object_r:sepgadm_lab_b_table_t:s0';
SECURITY LABEL FOR selinux ON COLUMN bob_notes.note IS 'system_u:object_r:sepgadm_lab_b_table_t:s0';
SQL

cat >/etc/sepgadm/demo.toml <<'TOML'
credential_file = "/etc/sepgadm/credential"
session_log = "/var/log/sepgadm/sessions.jsonl"
admin_users = ["postgres"]

[[listen]]
address = "0.0.0.0:6432"
auth = "scram-sha-256"

[[listen]]
unix_socket_dir = "/run/sepgadm"
port = 6432
auth = "trust"

[server]
host = "/var/run/postgresql"
port = 5432

[auth]
auth_user = "postgres"

[[context]]
user = "alice"
context = "system_u:system_r:sepgadm_lab_tenant_a_t:s0"

[[context]]
user = "bob"
context = "system_u:system_r:sepgadm_lab_tenant_b_t:s0"
TOML

install -m 0755 /usr/local/bin/sepgadm /usr/sbin/sepgadm
restorecon -F /usr/sbin/sepgadm
restorecon -RF /etc/sepgadm /var/log/sepgadm /run/sepgadm
systemctl stop sepgadm-demo.service 2>/dev/null || true
systemd-run --unit=sepgadm-demo --collect /usr/sbin/sepgadm proxy --config /etc/sepgadm/demo.toml >/dev/null
for _ in $(seq 1 100); do
	if PGPASSWORD=alice psql -X -At "host=127.0.0.1 port=6432 dbname=demo user=alice" -c 'SELECT 1' >/dev/null 2>&1; then
		pid=$(systemctl show -p MainPID --value sepgadm-demo.service)
		echo "demo: proxy pid $pid runs as $(cat /proc/"$pid"/attr/current | tr -d '\0')"
		exit 0
	fi
	sleep 0.2
done
echo "demo: the proxy did not come up" >&2
journalctl -u sepgadm-demo.service --no-pager | tail -20 >&2
exit 1
