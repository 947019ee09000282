#!/bin/bash
# lab/tests.sh: the in-guest script `make test-lab` hands to lab/run. Runs every Go test
# binary in $LAB_TESTS (built on the host with `go test -tags lab -c`, named after their
# package directory with / as __), each from its package directory under /src, and prints
# one closing line. A skipped test is a failure here: the lab is where nothing may skip.
set -u
# Policy modules under test (lab/run --policy), loaded in one transaction.
if compgen -G "/in/policy/*.pp" >/dev/null; then
	start=$(date +%s)
	semodule -i /in/policy/*.pp || { echo "lab: loading policy modules failed" >&2; exit 1; }
	echo "lab: loaded $(cd /in/policy && echo *.pp) in $(($(date +%s) - start)) s"
fi
pass=0 fail=0 skip=0 rc=0 bins=0
for bin in "$LAB_TESTS"/*.test; do
	[ -e "$bin" ] || break
	bins=$((bins + 1))
	name=$(basename "$bin" .test)
	pkgdir=/src/${name//__//}
	echo "=== lab package ./${name//__//}"
	log=$OUT/$name.log
	(cd "$pkgdir" && "$bin" -test.v -test.count=1 -test.timeout=25m) 2>&1 | tee "$log"
	[ "${PIPESTATUS[0]}" = 0 ] || rc=1
	pass=$((pass + $(grep -c -- '--- PASS' "$log")))
	fail=$((fail + $(grep -c -- '--- FAIL' "$log")))
	skip=$((skip + $(grep -c -- '--- SKIP' "$log")))
done
if [ "$bins" = 0 ] || [ "$pass" = 0 ]; then
	echo "lab: no test ran" >&2
	rc=1
fi
[ "$skip" = 0 ] || { echo "lab: $skip tests skipped; in the lab a skip is a failure" >&2; rc=1; }
[ "$fail" = 0 ] || rc=1
echo "lab: $pass passed, $fail failed, $skip skipped"
exit "$rc"
