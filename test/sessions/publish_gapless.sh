#!/usr/bin/env bash
# Policy versions stay gapless (1..N) under concurrent publishers: 4 pgbench
# clients publish into one world at the same time; afterwards the versions
# are exactly 1..N, one per committed publish, and the world's chain verifies.
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

world="gapless-$$"
psql -c "SELECT wval_world_upsert('$world', actor => 'test')" >/dev/null

script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<SQL
SELECT wval_policy_publish('$world', '{"validation_profiles": {}}', 'publisher-' || :client_id);
SQL

clients=4 per_client=50
"$WVAL_BINDIR/pgbench" -n -c $clients -j $clients -t $per_client -f "$script" >/dev/null

expected=$((clients * per_client))
read -r n lo hi distinct < <(psql -F ' ' -c \
	"SELECT count(*), min(version), max(version), count(DISTINCT version) FROM wval.policy_versions WHERE world_id = '$world'")
echo "versions: count=$n min=$lo max=$hi distinct=$distinct (expected 1..$expected)"
[ "$n" = "$expected" ] && [ "$lo" = 1 ] && [ "$hi" = "$expected" ] && [ "$distinct" = "$expected" ] ||
	{ echo "FAIL: versions are not gapless"; exit 1; }

authors=$(psql -c "SELECT count(DISTINCT author) FROM wval.policy_versions WHERE world_id = '$world'")
[ "$authors" = "$clients" ] || { echo "FAIL: expected $clients publishers, saw $authors"; exit 1; }

events=$(psql -c "SELECT count(*) FROM wval.events WHERE world_id = '$world' AND type = 'policy_version_published'")
[ "$events" = "$expected" ] || { echo "FAIL: expected $expected events, saw $events"; exit 1; }

[ "$(psql -c "SELECT wval_verify_chain('$world')")" = t ] || { echo "FAIL: chain does not verify"; exit 1; }
echo "ok: $expected versions from $clients concurrent publishers, gapless, chain intact"
