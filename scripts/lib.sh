# scripts/lib.sh: shared set-up steps of the demo and test drivers.
# Sourced, not executed.  Everything here works from a clean clone on a
# fresh Debian 12 machine: packages come from apt, the server is a private
# throw-away cluster, and PostgreSQL runs as the postgres user when we are
# root (it refuses to run as root).

set -euo pipefail

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BINDIR/pg_config
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the demo and the tests use (prometheus for
# promtool, prometheus-postgres-exporter: test/sessions/monitoring_tools.sh;
# plproxy: wval_proxy, test/sessions/cluster.sh; chromium and python3-websocket:
# test/sessions/reports_browser.sh).
WVAL_PACKAGES=(make gcc libc6-dev
	postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
	postgresql-$PG_MAJOR-cron postgresql-$PG_MAJOR-pgtap postgresql-$PG_MAJOR-plproxy
	python3 python3-psycopg2 python3-yaml
	prometheus prometheus-postgres-exporter
	chromium python3-websocket)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# A doc snippet (test/docs/run.py) must not start a suite, the demo or a
# benchmark of its own: the suite would run the docs again, and so on.
[ -z "${WVAL_DOCS_RUNNING:-}" ] || [ "${BASH_SOURCE[1]##*/}" = docs.sh ] ||
	die "${BASH_SOURCE[1]:-scripts/lib.sh} run from a doc snippet: fence such commands as \`\`\`text"

# as_root CMD...: runs CMD as root (directly, or through sudo).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else die "need root (or sudo) to run: $*"; fi
}

# as_pg CMD...: runs CMD as the user that owns the throw-away clusters.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
	else "$@"; fi
}

# ensure_packages: installs the missing Debian packages (apt-get).
ensure_packages() {
	local missing=() p
	for p in "${WVAL_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found after installing packages"
	command -v pg_prove >/dev/null || die "pg_prove not found (package postgresql-$PG_MAJOR-pgtap)"
}

# build [make args...]: builds the extension warning-free.  WVAL_CFLAGS adds
# compiler flags (PGXS passes COPT to the compiler and the linker), e.g. the
# sanitizer build of scripts/sanitize.sh; make does not track flags, so build
# such variants in a copy of the tree (sanitize.sh does).
build() {
	log "building wval${WVAL_CFLAGS:+ with $WVAL_CFLAGS}"
	make -C "$REPO" -s -j2 PG_CONFIG="$PG_CONFIG" COPT="-Werror${WVAL_CFLAGS:+ $WVAL_CFLAGS}" "$@"
}

# stage DIR: a private copy of the PostgreSQL installation with wval
# installed into it (make install DESTDIR=...).  PostgreSQL finds its share
# and lib directories relative to its binaries, so the copy runs as is; the
# system installation is left alone and parallel checkouts do not collide.
stage() {
	local dir=$1
	log "installing wval into a private copy of PostgreSQL $PG_MAJOR ($dir)"
	mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql"
	cp -a /usr/lib/postgresql/$PG_MAJOR "$dir/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/$PG_MAJOR "$dir/usr/share/postgresql/"
	make -C "$REPO" -s PG_CONFIG="$PG_CONFIG" DESTDIR="$dir" install >/dev/null
}

# start_cluster BINDIR DATADIR CRON_DB [extra postgresql.conf lines]: a
# throw-away cluster listening only on a Unix socket in DATADIR/sock.
# pg_cron runs its jobs over libpq connections, so cron.host points at
# that socket directory (its default, localhost, is not listened on).
start_cluster() {
	local bindir=$1 data=$2 crondb=$3 extra=${4:-}
	local owner
	owner=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
	mkdir -p "$data"
	chown "$owner" "$data"
	chmod 700 "$data"
	as_pg "$bindir/initdb" -D "$data/pgdata" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	mkdir -p "$data/sock"
	chown "$owner" "$data/sock"
	cat >>"$data/pgdata/postgresql.conf" <<-EOF
		listen_addresses = ''
		unix_socket_directories = '$data/sock'
		port = 5432
		shared_preload_libraries = 'pg_cron'
		cron.database_name = '$crondb'
		cron.host = '$data/sock'
		max_connections = 100
		log_min_messages = warning
		$extra
	EOF
	as_pg "$bindir/pg_ctl" -D "$data/pgdata" -l "$data/server.log" -w start >/dev/null ||
		{ cat "$data/server.log" >&2; die "the throw-away cluster did not start"; }
}

# stop_cluster BINDIR DATADIR: stops a cluster started by start_cluster.
stop_cluster() {
	local bindir=$1 data=$2
	[ -f "$data/pgdata/postmaster.pid" ] || return 0
	as_pg "$bindir/pg_ctl" -D "$data/pgdata" -m fast -w stop >/dev/null 2>&1 || true
}

# bench_cluster CRON_DB [extra postgresql.conf lines]: the set-up every
# benchmark shares: packages, a -Werror build, a private PostgreSQL copy with
# wval in $WORK/stage, a throw-away cluster with the server's default
# durability (removed on exit), PGHOST/PGPORT/PGUSER exported, $BIN and the
# array PSQL=(psql -X -q -v ON_ERROR_STOP=1) set.
bench_cluster() {
	local crondb=$1 extra=${2:-}
	ensure_packages
	build
	WORK=$(mktemp -d /tmp/wval-bench.XXXXXX)
	chmod 755 "$WORK"
	BIN=$WORK/stage$PG_BINDIR
	trap 'stop_cluster "$BIN" "$WORK/cluster"; rm -rf "$WORK"' EXIT
	stage "$WORK/stage"
	start_cluster "$BIN" "$WORK/cluster" "$crondb" "$extra"
	export PGHOST=$WORK/cluster/sock PGPORT=5432 PGUSER=postgres
	PSQL=("$BIN/psql" -X -q -v ON_ERROR_STOP=1)
}
