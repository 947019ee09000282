#!/usr/bin/env bash
# bench.sh BUILD SIZE [RUNS]: the audit benchmark (make bench-audit). Generates the logs once
# per size, times each tool RUNS times (default 3) with /usr/bin/time -v (page cache
# warm: one untimed read first), and prints the median time, MB/s, ratios and the
# peak RSS. (This machine's timings vary by up to a fifth from run to run.)
set -euo pipefail
build=$1 size=$2 runs=${3:-3}
dir=$build/bench
mkdir -p "$dir"
command -v ausearch >/dev/null || { echo "bench-audit: ausearch missing (apt-get install auditd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-audit: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
gen() { # kind file
	if [ ! -f "$2" ] || [ "$(cat "$2.size" 2>/dev/null)" != "$size" ]; then
		go run ./bench/loggen/cmd/loggen -kind "$1" -size "$size" -o "$2" >"$2.counts"
		echo "$size" >"$2.size"
	fi
}
gen audit "$dir/audit.log"
gen pgstderr "$dir/postgresql.log"
measure() { # name file cmd... → prints "name secs MB/s rssMB lines" (median time of $runs runs, peak RSS)
	local name=$1 file=$2; shift 2
	cat "$file" >/dev/null
	local t=$dir/time.txt all=() rss=0 r secs mb lines
	for ((i = 0; i < runs; i++)); do
		/usr/bin/time -v -o "$t" "$@" >"$dir/out.txt" 2>/dev/null || true
		all+=("$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$t")")
		r=$(awk -F': ' '/Maximum resident/{printf "%.1f", $2/1024}' "$t")
		rss=$(awk -v a="$rss" -v b="$r" 'BEGIN{print (b > a ? b : a)}')
	done
	secs=$(printf '%s\n' "${all[@]}" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}')
	mb=$(awk -v b="$(stat -c %s "$file")" -v s="$secs" 'BEGIN{printf "%.1f", b/1e6/(s>0?s:0.001)}')
	lines=$(wc -l <"$dir/out.txt")
	printf '%-44s %8.2f s %9s MB/s %8s MiB RSS %10s lines   (runs: %s)\n' "$name" "$secs" "$mb" "$rss" "$lines" "${all[*]}"
	echo "$name|$secs" >>"$dir/results.txt"
}
: >"$dir/results.txt"
echo "audit.log: $(stat -c %s "$dir/audit.log") bytes $(cat "$dir/audit.log.counts")"
measure "sepgadm audit --result denied -o csv" "$dir/audit.log" "$build/sepgadm" audit --result denied -o csv --auditlog "$dir/audit.log"
measure "ausearch -m AVC,USER_AVC --format csv -if" "$dir/audit.log" ausearch -m AVC,USER_AVC --format csv -if "$dir/audit.log"
measure "ausearch -m AVC --raw -if" "$dir/audit.log" ausearch -m AVC --raw -if "$dir/audit.log"
measure "grep -c denied (audit.log)" "$dir/audit.log" grep -c denied "$dir/audit.log"
echo "postgresql.log: $(stat -c %s "$dir/postgresql.log") bytes $(cat "$dir/postgresql.log.counts")"
measure "sepgadm audit --result denied -o csv (pg)" "$dir/postgresql.log" "$build/sepgadm" audit --result denied -o csv --pglog "$dir/postgresql.log"
measure "grep -c denied (postgresql.log)" "$dir/postgresql.log" grep -c denied "$dir/postgresql.log"
res() { awk -F'|' -v n="$1" '$1 == n {print $2}' "$dir/results.txt"; }
s=$(res "sepgadm audit --result denied -o csv") c=$(res "ausearch -m AVC,USER_AVC --format csv -if")
w=$(res "ausearch -m AVC --raw -if") g=$(res "grep -c denied (audit.log)")
sp=$(res "sepgadm audit --result denied -o csv (pg)") gp=$(res "grep -c denied (postgresql.log)")
awk -v s="$s" -v c="$c" -v w="$w" -v g="$g" -v sp="$sp" -v gp="$gp" 'BEGIN{
	printf "ratios: sepgadm is %.1fx faster than ausearch csv (target >= 10x), %.1fx vs ausearch raw;\n", c/s, w/s
	printf "        %.1fx the time of grep on audit.log and %.1fx on postgresql.log (target <= 3x)\n", s/g, sp/gp }'
