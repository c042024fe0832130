#!/usr/bin/env bash
# The list benchmark: builds the gateway, the fixture and the benchmark in release mode, then
# runs target/release/metamcp-lists-bench with this script's arguments, e.g.
#   scripts/lists-bench.sh                 # 50 servers × 42 tools warm tools/list; a hung server
# See the doc comment of crates/metamcp-it/src/bin/lists_bench.rs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release -p metamcp -p metamcp-it --bins >&2

target_dir="${CARGO_TARGET_DIR:-$root/target}"
exec "$target_dir/release/metamcp-lists-bench" "$@"
