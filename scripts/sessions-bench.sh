#!/usr/bin/env bash
# The sessions benchmark: builds the gateway, the fixture and the benchmark in release mode,
# then runs target/release/metamcp-sessions-bench with this script's arguments, e.g.
#   scripts/sessions-bench.sh                         # 1,000 sessions, 10 stdio servers, 20 s
#   scripts/sessions-bench.sh --seconds 60 --check    # longer; exit 1 on a missed target
#   scripts/sessions-bench.sh --connections 64        # sessions multiplexed over 64 sockets
# It reports the gateway's upstream process count (target ≤ 10), its RSS (target ≤ 150 MB),
# throughput, p50/p99 latency and errors. See `target/release/metamcp-sessions-bench --help`
# and the doc comment of crates/metamcp-it/src/bin/sessions_bench.rs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release -p metamcp -p metamcp-it --bins >&2

# One socket per session on each side: raise the soft open-files limit to the hard one
# (the bench shares fewer connections between the sessions when the limit stays too low).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Every session has its own connection, all from 127.0.0.1: raise the gateway's connection
# caps (by default 256 per client IP and 10,000 in all) above any --sessions this runs with.
# The gateway the bench starts inherits them; set either variable to test a cap instead.
export METAMCP_MAX_CONNECTIONS_PER_IP="${METAMCP_MAX_CONNECTIONS_PER_IP:-100000}"
export METAMCP_MAX_CONNECTIONS="${METAMCP_MAX_CONNECTIONS:-100000}"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
exec "$target_dir/release/metamcp-sessions-bench" "$@"
