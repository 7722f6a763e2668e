#!/usr/bin/env bash
# test/bench/shards.sh: wval_evaluate through wval_proxy (PL/Proxy) with 1, 2
# and 4 shards against direct calls to one server (not part of the test
# suite; docs/scale-out.md).
#
#   D   pgbench against one shard's database directly (16 worlds on it)
#   P1  the same call through the proxy, one shard (the same kind of database)
#   P2  through the proxy, two shards (the 16 worlds spread by hash)
#   P4  through the proxy, four shards
#
# Each is a separate server (own port, socket in a temp dir), at the
# server's default durability; every client evaluates a 252-day return
# series with the sample policy in a world picked at random per call.
# Reported: TPS of each (median of ROUNDS), P1/D (what routing through the
# proxy costs: one more connection hop and a second parse/plan per call),
# and P2/P1, P4/P1 (how throughput grows with shards).  On one machine the
# shards share its cores: with 2 cores, P2 and P4 show the proxy's cost of
# fanning out, not the growth that shards on their own machines would give;
# the script prints the core count next to the numbers.
#
# Usage: test/bench/shards.sh [seconds per run, default 10] [clients, default 1,4] [rounds, default 3]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SECS=${1:-10}
CLIENT_LIST=${2:-1,4}
ROUNDS=${3:-3}
WORLDS=16

ensure_packages
build
WORK=$(mktemp -d /tmp/wval-bench.XXXXXX)
chmod 755 "$WORK"
BIN=$WORK/stage$PG_BINDIR
NODES=(proxy s0 s1 s2 s3)
cleanup() {
	local n
	for n in "${NODES[@]}"; do stop_cluster "$BIN" "$WORK/$n"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
stage "$WORK/stage"
port=6580
for n in "${NODES[@]}"; do
	start_cluster "$BIN" "$WORK/$n" postgres "port = $port
shared_preload_libraries = ''
max_connections = 60"
	echo "$port" >"$WORK/$n.port"
	port=$((port + 1))
done
export PGUSER=postgres
q() { local n=$1; shift; "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$WORK/$n/sock" -p "$(cat "$WORK/$n.port")" "$@"; }

log "databases: bench<k> on the first k shards, proxy<k> in front of them"
for k in 1 2 4; do
	for i in $(seq 0 $((k - 1))); do
		q "s$i" -d postgres -c "CREATE DATABASE bench$k"
		q "s$i" -d "bench$k" -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval CASCADE" -c "SELECT wval_maintain()" >/dev/null
	done
	q proxy -d postgres -c "CREATE DATABASE proxy$k"
	conn=$(for i in $(seq 0 $((k - 1))); do printf "'host=%s port=%s dbname=bench%s'," "$WORK/s$i/sock" "$(cat "$WORK/s$i.port")" $k; done)
	q proxy -d "proxy$k" -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval_proxy CASCADE" \
		-c "SELECT wval_proxy_set_shards(ARRAY[${conn%,}])" >/dev/null
	# worlds and policies through the proxy; activation by a second login on every shard
	q proxy -d "proxy$k" >/dev/null <<-SQL
		SELECT wval_world_upsert('bw-' || i, actor => 'bench') FROM generate_series(1, $WORLDS) i;
		SELECT wval_policy_publish('bw-' || i, (SELECT '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}'::jsonb), 'alice')
		FROM generate_series(1, $WORLDS) i;
	SQL
	for i in $(seq 0 $((k - 1))); do
		q "s$i" -d "bench$k" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_bob') THEN CREATE ROLE bench_bob LOGIN IN ROLE wval_validator; END IF; END \$\$" \
			-c "SET SESSION AUTHORIZATION bench_bob" \
			-c "SELECT wval_policy_activate(world_id, 1, 'bob', 'bench') FROM wval.worlds" >/dev/null
	done
done
cat >"$WORK/evaluate.sql" <<EOF
\set w random(1, $WORLDS)
\set s random(1, 1000000000)
SELECT status FROM wval_evaluate('bw-' || :w, 'st-' || :s, 'backtest',
    returns => (SELECT array_agg(0.0004 + 0.01 * sin(k * (:s % 97 + 1))) FROM generate_series(1, 252) k)::float8[],
    context => '{"periods_per_year": 252}');
EOF

# tps NODE DB CLIENTS: median TPS of ROUNDS pgbench runs
tps() {
	local n=$1 db=$2 c=$3 r out all=()
	for r in $(seq 1 "$ROUNDS"); do
		out=$("$BIN/pgbench" -n -h "$WORK/$n/sock" -p "$(cat "$WORK/$n.port")" -f "$WORK/evaluate.sql" -c "$c" -j "$c" -T "$SECS" "$db" 2>&1) ||
			{ echo "$out" >&2; die "pgbench failed on $n/$db"; }
		all+=("$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")")
	done
	printf '%s\n' "${all[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"
}

echo
echo "wval_evaluate, 252 returns, a one-check policy; ${SECS}s x $ROUNDS rounds (median); $(nproc) cores shared by all five servers"
printf '%-8s %10s %10s %10s %10s %9s %9s %9s %14s\n' clients D P1 P2 P4 P1/D P2/P1 P4/P1 'proxy ms/call'
for c in $(tr ',' ' ' <<<"$CLIENT_LIST"); do
	d=$(tps s0 bench1 "$c")
	p1=$(tps proxy proxy1 "$c")
	p2=$(tps proxy proxy2 "$c")
	p4=$(tps proxy proxy4 "$c")
	awk -v c="$c" -v d="$d" -v p1="$p1" -v p2="$p2" -v p4="$p4" 'BEGIN {
		printf "%-8s %10.1f %10.1f %10.1f %10.1f %9.2f %9.2f %9.2f %14.2f\n", c, d, p1, p2, p4, p1 / d, p2 / p1, p4 / p1,
		       1000 * c / p1 - 1000 * c / d }'
done
for k in 1 2 4; do
	echo "runs per shard with $k shard(s): $(for i in $(seq 0 $((k - 1))); do q "s$i" -d "bench$k" -c "SELECT count(*) FROM wval.evaluation_runs"; done | paste -sd' ')"
done
cat <<'EOF'

P1/D is the proxy's price per call (an extra hop and parse on the proxy server);
"proxy ms/call" is the added latency per call at that client count.  P2/P1
and P4/P1 measure throughput growth with shards only when each shard has its
own cores; here all five servers share this machine's cores, so these ratios
show that routing to more shards costs little, not how far shards scale.
EOF
