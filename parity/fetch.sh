#!/bin/bash
# parity/fetch.sh DIR: PostgreSQL's core regression suite (src/test/regress) from
# Debian's postgresql-15 source package into DIR, with the C libraries its tests load
# (regress.so, autoinc.so, refint.so) built against the installed server's headers and
# a serial schedule. Run by `make setup`; needs root the first time (a deb-src entry).
# The installed server's own version is preferred; if its source cannot be had, the
# newest postgresql-15 source that can: the parity test compares a direct run with a
# run through the proxy, so both read the same files either way.
set -euo pipefail
dir=${1:?usage: parity/fetch.sh DIR}
ver=$(dpkg-query -W -f='${Version}' postgresql-15)
if [ -f "$dir/.fetched" ]; then
	exit 0
fi
if ! apt-cache showsrc postgresql-15 2>/dev/null | grep -q '^Version:'; then
	cat >/etc/apt/sources.list.d/sepgadm-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
got=""
for v in "$ver" $(apt-cache showsrc postgresql-15 | awk '/^Version:/ {print $2}' | sort -rV); do
	if (cd "$tmp" && apt-get source -qq --download-only "postgresql-15=$v" >/dev/null 2>&1); then
		got=$v
		break
	fi
	rm -f "$tmp"/*
done
[ -n "$got" ] || { echo "parity/fetch.sh: no postgresql-15 source package could be downloaded" >&2; exit 1; }
upstream=${got%%-*}
tar xjf "$tmp/postgresql-15_$upstream.orig.tar.bz2" -C "$tmp" \
	"postgresql-$upstream/src/test/regress" "postgresql-$upstream/contrib/spi"
rm -rf "$dir" && mkdir -p "$dir"
cp -r "$tmp/postgresql-$upstream/src/test/regress/." "$dir/"
inc=$(pg_config --includedir-server)
gcc -O2 -fPIC -shared -I"$inc" -o "$dir/regress.so" "$dir/regress.c"
for m in autoinc refint; do
	gcc -O2 -fPIC -shared -I"$inc" -o "$dir/$m.so" "$tmp/postgresql-$upstream/contrib/spi/$m.c"
done
# One test at a time, in the parallel schedule's order.
awk '/^test:/ {for (i = 2; i <= NF; i++) print "test: " $i; next} {print}' "$dir/parallel_schedule" >"$dir/serial_schedule"
chmod -R a+rX "$dir"
echo "$got (server $ver)" >"$dir/.fetched"
echo "parity/fetch.sh: PostgreSQL $got regression suite in $dir"
