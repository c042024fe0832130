#!/usr/bin/env bash
# Builds the gateway, the fixture and the benchmark in release mode, then runs
# target/release/metamcp-bench with this script's arguments, e.g.
#   scripts/bench.sh                      # json mode, 2 rounds, 5 s per run
#   scripts/bench.sh --mode both --json   # both fixture modes, JSON on stdout
# See `target/release/metamcp-bench --help` and the doc comment of
# crates/metamcp-it/src/bin/bench/main.rs for what is measured and how.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Build output goes to stderr so that `--json` leaves stdout machine-readable.
cargo build --release -p metamcp -p metamcp-it --bins >&2

target_dir="${CARGO_TARGET_DIR:-$root/target}"
exec "$target_dir/release/metamcp-bench" "$@"
