// Package loggen writes large, realistic synthetic logs for the audit benchmark and
// tests: a Linux audit log (ENRICHED, node=, AVC with SYSCALL/CWD/PATH/PROCTITLE,
// USER_AVC, other records) and a PostgreSQL stderr log with sepgsql lines. Output is
// deterministic for a seed. The logs are synthetic: never use them as fixtures of what
// the servers write (the top-level testdata/lab holds real ones).
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
)

// Counts are what a generator wrote.
type Counts struct {
	Bytes        int64
	Lines        int64
	Denials      int64 // AVC/USER_AVC denials, or sepgsql denials
	DenialRecord int64 // lines holding the word "denied"
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) printf(format string, args ...any) {
	n, _ := fmt.Fprintf(c.w, format, args...)
	c.n += int64(n)
}

var (
	domains = []string{"httpd_t", "postgresql_t", "sshd_t", "cron_t", "sepgadm_lab_client_t", "named_t", "smbd_t"}
	targets = []string{"shadow_t", "etc_t", "var_log_t", "user_home_t", "tmp_t", "postgresql_db_t", "admin_home_t"}
	classes = []string{"file", "dir", "sock_file", "lnk_file"}
	perms   = []string{"read", "write", "open", "getattr", "search", "read write", "create"}
	comms   = []string{"httpd", "postgres", "sshd", "cron", "psql", "named", "smbd"}
	dbperms = []string{"select", "insert", "update", "delete", "getattr execute", "search"}
	dbclass = []string{"db_table", "db_column", "db_procedure", "db_schema", "db_sequence"}
	dbtgt   = []string{"sepgsql_secret_table_t", "sepgsql_ro_table_t", "sepgsql_table_t", "sepgsql_proc_exec_t", "sepgsql_schema_t"}
)

// AuditLog writes about size bytes of audit log to w.
func AuditLog(w io.Writer, size int64, seed uint64) (Counts, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	c := &countWriter{w: bw}
	r := rand.New(rand.NewPCG(seed, 1))
	var cnt Counts
	sec, ms, serial := int64(1795000000), 0, uint64(1000)
	const enr = "\x1d"
	for c.n < size {
		ms += r.IntN(40)
		if ms >= 1000 {
			sec += int64(ms / 1000)
			ms %= 1000
		}
		serial++
		i := r.IntN(len(domains))
		dom, tgt, comm := domains[i], targets[r.IntN(len(targets))], comms[i]
		pid := 1000 + r.IntN(30000)
		stamp := fmt.Sprintf("node=db%d type=%%s msg=audit(%d.%03d:%d): ", r.IntN(3)+1, sec, ms, serial)
		rec := func(typ string) string { return fmt.Sprintf(stamp, typ) }
		switch k := r.IntN(100); {
		case k < 40: // kernel file denial with its syscall records
			cnt.Denials++
			cnt.DenialRecord++
			c.printf("%savc:  denied  { %s } for  pid=%d comm=\"%s\" name=\"f%d\" dev=\"vda1\" ino=%d scontext=system_u:system_r:%s:s0 tcontext=system_u:object_r:%s:s0 tclass=%s permissive=%d\n",
				rec("AVC"), perms[r.IntN(len(perms))], pid, comm, r.IntN(1000), r.IntN(1<<20), dom, tgt, classes[r.IntN(len(classes))], r.IntN(2))
			c.printf("%sarch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=7ffd2a3c a2=0 a3=0 items=1 ppid=1 pid=%d auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"%s\" exe=\"/usr/sbin/%s\" subj=system_u:system_r:%s:s0 key=(null)%sARCH=x86_64 SYSCALL=openat AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"\n",
				rec("SYSCALL"), pid, comm, comm, dom, enr)
			c.printf("%scwd=\"/\"\n", rec("CWD"))
			c.printf("%sitem=0 name=\"/srv/f%d\" inode=%d dev=fe:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 obj=system_u:object_r:%s:s0 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0%sOUID=\"root\" OGID=\"root\"\n",
				rec("PATH"), r.IntN(1000), r.IntN(1<<20), tgt, enr)
			c.printf("%sproctitle=2F7573722F7362696E2F%x\n", rec("PROCTITLE"), comm)
			cnt.Lines += 5
		case k < 55: // userspace object manager
			cnt.Denials++
			cnt.DenialRecord++
			c.printf("%spid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='avc:  denied  { status } for auid=n/a uid=0 gid=0 path=\"/lib/systemd/system/x%d.service\" cmdline=\"\" function=\"mac_selinux_filter\" scontext=system_u:system_r:%s:s0 tcontext=system_u:object_r:systemd_unit_t:s0 tclass=service permissive=0  exe=\"/usr/lib/systemd/systemd\" sauid=0 hostname=? addr=? terminal=?'%sUID=\"root\" AUID=\"unset\"\n",
				rec("USER_AVC"), r.IntN(50), dom, enr)
			cnt.Lines++
		case k < 60: // granted (auditallow)
			c.printf("%savc:  granted  { setenforce } for  pid=%d comm=\"setenforce\" scontext=system_u:system_r:sysadm_t:s0 tcontext=system_u:object_r:security_t:s0 tclass=security\n", rec("AVC"), pid)
			c.printf("%sarch=c000003e syscall=1 success=yes exit=1 a0=3 a1=7fff a2=1 a3=0 items=0 ppid=1 pid=%d auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"setenforce\" exe=\"/usr/sbin/setenforce\" subj=system_u:system_r:sysadm_t:s0 key=(null)%sARCH=x86_64 SYSCALL=write\n", rec("SYSCALL"), pid, enr)
			cnt.Lines += 2
		case k < 80: // syscall audit rule, no AVC
			c.printf("%sarch=c000003e syscall=59 success=yes exit=0 a0=5581 a1=5582 a2=5583 a3=0 items=2 ppid=1 pid=%d auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=\"%s\" exe=\"/usr/bin/%s\" subj=unconfined_u:unconfined_r:unconfined_t:s0 key=\"exec\"%sARCH=x86_64 SYSCALL=execve AUID=\"alice\" UID=\"alice\"\n", rec("SYSCALL"), pid, comm, comm, enr)
			c.printf("%sargc=2 a0=\"%s\" a1=\"-x\"\n", rec("EXECVE"), comm)
			c.printf("%sproctitle=%x\n", rec("PROCTITLE"), comm)
			cnt.Lines += 3
		default: // logins, services
			c.printf("%spid=%d uid=0 auid=1000 ses=3 subj=system_u:system_r:sshd_t:s0 msg='op=PAM:session_open grantors=pam_unix acct=\"alice\" exe=\"/usr/sbin/sshd\" hostname=10.0.0.%d addr=10.0.0.%d terminal=ssh res=success'%sUID=\"root\" AUID=\"alice\"\n", rec("USER_START"), pid, r.IntN(255), r.IntN(255), enr)
			cnt.Lines++
		}
	}
	cnt.Bytes = c.n
	return cnt, bw.Flush()
}

// PGStderrLog writes about size bytes of PostgreSQL stderr log (log_line_prefix
// '%m [%p] %q%u@%d ') with sepgsql denials and audited grants among ordinary lines.
func PGStderrLog(w io.Writer, size int64, seed uint64) (Counts, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	c := &countWriter{w: bw}
	r := rand.New(rand.NewPCG(seed, 2))
	var cnt Counts
	sec, ms := int64(1795000000), 0
	for c.n < size {
		ms += r.IntN(20)
		if ms >= 1000 {
			sec += int64(ms / 1000)
			ms %= 1000
		}
		h, m, s := (sec/3600)%24, (sec/60)%60, sec%60
		ts := fmt.Sprintf("2026-11-%02d %02d:%02d:%02d.%03d UTC", 1+(sec/86400)%28, h, m, s, ms)
		pid := 2000 + r.IntN(5000)
		pfx := fmt.Sprintf("%s [%d] app%d@db%d ", ts, pid, r.IntN(20), r.IntN(5))
		i := r.IntN(len(dbtgt))
		switch k := r.IntN(100); {
		case k < 25:
			cnt.Denials++
			cnt.DenialRecord++
			stmt := fmt.Sprintf("SELECT * FROM t%d WHERE id = %d", r.IntN(100), r.IntN(1000))
			c.printf("%sLOG:  SELinux: denied { %s } scontext=system_u:system_r:%s:s0 tcontext=system_u:object_r:%s:s0 tclass=%s name=\"public.t%d\" permissive=0\n",
				pfx, dbperms[r.IntN(len(dbperms))], domains[r.IntN(len(domains))], dbtgt[i], dbclass[i], r.IntN(100))
			c.printf("%sSTATEMENT:  %s\n", pfx, stmt)
			c.printf("%sERROR:  SELinux: security policy violation\n", pfx)
			c.printf("%sSTATEMENT:  %s\n", pfx, stmt)
			cnt.Lines += 4
		case k < 35:
			c.printf("%sLOG:  SELinux: allowed { search } scontext=system_u:system_r:%s:s0 tcontext=system_u:object_r:sepgsql_schema_t:s0 tclass=db_schema name=\"public\" permissive=0 at character 15\n", pfx, domains[r.IntN(len(domains))])
			c.printf("%sSTATEMENT:  SELECT a,\n\t       b\n\t  FROM t%d\n", pfx, r.IntN(100))
			cnt.Lines += 4
		case k < 70:
			c.printf("%sLOG:  duration: %d.%03d ms  statement: SELECT count(*) FROM orders WHERE customer_id = %d\n", pfx, r.IntN(100), r.IntN(1000), r.IntN(100000))
			cnt.Lines++
		case k < 85:
			c.printf("%sLOG:  connection authorized: user=app%d database=db%d application_name=psql\n", pfx, r.IntN(20), r.IntN(5))
			cnt.Lines++
		default:
			c.printf("%s [%d] LOG:  checkpoint complete: wrote %d buffers (%d.%d%%); 0 WAL file(s) added, 0 removed, 1 recycled; write=%d.%03d s, sync=0.002 s, total=%d.%03d s\n", ts, 100+r.IntN(10), r.IntN(5000), r.IntN(100), r.IntN(10), r.IntN(30), r.IntN(1000), r.IntN(30), r.IntN(1000))
			cnt.Lines++
		}
	}
	cnt.Bytes = c.n
	return cnt, bw.Flush()
}
