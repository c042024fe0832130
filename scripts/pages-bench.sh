#!/usr/bin/env bash
# The dashboard page benchmark: builds the gateway, the fixture and the benchmark in release
# mode, then runs target/release/metamcp-pages-bench with this script's arguments, e.g.
#   scripts/pages-bench.sh             # 100 servers, ~2,700 tools, 50 namespaces, 20 rounds
#   scripts/pages-bench.sh --check     # exit 1 when a page takes 100 ms or more
# See the doc comment of crates/metamcp-it/src/bin/pages_bench.rs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release -p metamcp -p metamcp-it --bins >&2

target_dir="${CARGO_TARGET_DIR:-$root/target}"
exec "$target_dir/release/metamcp-pages-bench" "$@"
