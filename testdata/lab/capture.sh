#!/bin/bash
# Capture real sepgsql and kernel audit records for the audit package's fixtures
# (testdata/lab). Run with: lab/run --out DIR capture.sh
set -u
P=/usr/lib/postgresql/15/bin/psql
C="runcon -t sepgadm_lab_client_t -- $P -X -h /var/run/postgresql -U postgres -d auditcap"
say() { echo "=== $*"; }
sql() { $P -X -h /var/run/postgresql -U postgres -d auditcap -c "$1" 2>&1; }
say setup
$P -X -h /var/run/postgresql -U postgres -d postgres -c "CREATE DATABASE auditcap"
sql "CREATE TABLE ta (id int, secret text)"
sql "INSERT INTO ta VALUES (1,'x')"
sql "SECURITY LABEL FOR selinux ON TABLE ta IS 'system_u:object_r:sepgsql_secret_table_t:s0'"
sql 'CREATE TABLE "My ""Quoted"" Table" ("Col A" int)'
sql 'SECURITY LABEL FOR selinux ON TABLE "My ""Quoted"" Table" IS '"'system_u:object_r:sepgsql_secret_table_t:s0'"
sql "CREATE TABLE open_t (a int, b text)"
sql "INSERT INTO open_t VALUES (1,'y')"
sql "SECURITY LABEL FOR selinux ON COLUMN open_t.b IS 'system_u:object_r:sepgsql_secret_table_t:s0'"
sql "CREATE TABLE ro_t (a int)"
sql "SECURITY LABEL FOR selinux ON TABLE ro_t IS 'system_u:object_r:sepgsql_ro_table_t:s0'"
say db denials
$C -c "SELECT * FROM ta" 2>&1
$C -c 'SELECT * FROM "My ""Quoted"" Table"' 2>&1
$C -c "SELECT a,
       b
  FROM open_t
 WHERE a = 1" 2>&1
$C -c "INSERT INTO ro_t VALUES (1)" 2>&1
$C -c "SELECT sepgsql_setcon('system_u:system_r:initrc_t:s0')" 2>&1
$C -c "SET sepgsql.debug_audit = on" -c "SELECT a FROM open_t" 2>&1
say os denials
runcon -t postgresql_t -- /bin/true 2>&1
runcon -t sepgadm_lab_client_t -- systemctl status auditd >/dev/null 2>&1; echo "systemctl status rc=$?"
runcon -t sepgadm_lab_client_t -- systemctl restart auditd 2>&1; echo "systemctl restart rc=$?"
touch /tmp/relabelme
runcon -t sepgadm_lab_client_t -- chcon -t sepgadm_no_such_t /tmp/relabelme 2>&1; echo "chcon rc=$?"
say bool
setsebool sepgsql_enable_users_ddl off 2>&1; setsebool sepgsql_enable_users_ddl on 2>&1
say permissive window
setenforce 0
$C -c "SELECT * FROM ta" 2>&1
runcon -t postgresql_t -- /bin/true 2>&1
setenforce 1
getenforce
say policy load
load_policy 2>&1; echo "load_policy rc=$?"
$C -c "SELECT * FROM ta -- after reload" 2>&1
sleep 2
ls -la /var/lib/postgresql/15/main/log/ /var/log/audit/
grep -c 'SELinux: denied' /var/lib/postgresql/15/main/log/*
for m in AVC USER_AVC SELINUX_ERR MAC_STATUS MAC_POLICY_LOAD MAC_CONFIG_CHANGE; do echo "$m: $(ausearch -m $m --raw -if /var/log/audit/audit.log 2>/dev/null | grep -c "type=$m ")"; done
ausearch -m AVC,USER_AVC --format csv -if /var/log/audit/audit.log > $OUT/ausearch.csv 2>&1
ausearch -m AVC,USER_AVC --raw -if /var/log/audit/audit.log > $OUT/ausearch.raw 2>&1
aureport --avc -if /var/log/audit/audit.log > $OUT/aureport-avc.txt 2>&1
echo done
