#!/bin/bash
# bench/labels.sh: run by `make bench-labels` through lab/run, in the enforcing
# guest. Builds a database of @TABLES@ tables x 4 columns, then times, with the same spec
# file (the system's sepgsql_contexts with every level moved to s0:c1, so every object
# changes): `sepgadm labels apply` against the server's own sepgsql_restorecon.
set -euo pipefail
N=@TABLES@
P=/usr/lib/postgresql/15/bin/psql
SPEC=/var/lib/postgresql/bench-c1.spec
res=$OUT/bench-labels.txt
sed -E 's/:s0$/:s0:c1/; s/:s0([[:space:]])/:s0:c1\1/' /etc/selinux/default/contexts/sepgsql_contexts >"$SPEC"
chmod 644 "$SPEC"; restorecon "$SPEC"
# SECURITY LABEL locks every object it labels until commit, and apply relabels a whole
# database in one transaction: the default lock table (64 x 100) is far too small for
# $N tables (sepgadm refuses up front and says so). sepgsql_restorecon takes no such locks.
$P -X -q -c 'ALTER SYSTEM SET max_locks_per_transaction = 1024'
systemctl restart postgresql@15-main
$P -X -q -c 'CREATE DATABASE bench'
start=$(date +%s)
for ((i = 1; i <= N; i += 1000)); do
	j=$((i + 999 < N ? i + 999 : N))
	$P -X -q -d bench -c "DO \$\$ BEGIN FOR i IN $i..$j LOOP EXECUTE format('CREATE TABLE t%s (a int, b int, c int, d int)', i); END LOOP; END \$\$"
done
echo "bench: created $N tables x 4 columns in $(($(date +%s) - start)) s" | tee "$res"
objs=$($P -X -At -d bench -c "SELECT count(*) FROM pg_seclabel")
echo "bench: $objs labelled objects in database bench" | tee -a "$res"

ms() { date +%s%3N; }
# Both timed runs start from the same state: every label at the system's, the catalogs
# that CREATE TABLE and relabeling fill vacuumed and analysed (no autovacuum of them
# running alongside) and a checkpoint just taken.
reset() {
	$P -X -q -d bench -c "SET client_min_messages = error; SELECT sepgsql_restorecon(NULL)" >/dev/null
	sepgadm labels check -d "host=/var/run/postgresql dbname=bench" -f /etc/selinux/default/contexts/sepgsql_contexts >/dev/null ||
		{ echo "bench: reset to the system labels failed" | tee -a "$res"; exit 1; }
	$P -X -q -d bench -c "VACUUM ANALYZE pg_catalog.pg_seclabel, pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_type, pg_catalog.pg_depend"
	$P -X -q -c "CHECKPOINT"
}
reset
t0=$(ms)
sepgadm labels apply -v -d "host=/var/run/postgresql dbname=bench" -f "$SPEC" 2>&1 | tee -a "$res"
t_apply=$(($(ms) - t0))
echo "bench: sepgadm labels apply: $t_apply ms" | tee -a "$res"

# Back to the system labels (untimed), then the server's restorecon with the same spec.
reset
t0=$(ms)
$P -X -q -d bench -c "SET client_min_messages = error; SELECT sepgsql_restorecon('$SPEC')" >/dev/null
t_rc=$(($(ms) - t0))
echo "bench: sepgsql_restorecon in the server: $t_rc ms" | tee -a "$res"
sepgadm labels check -d "host=/var/run/postgresql dbname=bench" -f "$SPEC" >/dev/null ||
	{ echo "bench: restorecon did not reach the spec's labels" | tee -a "$res"; exit 1; }
awk -v a="$t_apply" -v r="$t_rc" 'BEGIN { printf "bench: ratio apply/restorecon = %.2f (target <= 2.00)\n", a / r }' | tee -a "$res"
