#!/usr/bin/env bash
# The relay's regression guard: instructions per relayed tools/call and per cached tools/list,
# counted by valgrind's callgrind on the gateway alone (see the doc comment of
# crates/metamcp-it/src/bin/instructions.rs). Builds the gateway, the fixture and the counter
# in release mode, then compares with the committed baseline (bench/instructions.txt); more
# than 10 % over it fails (also the relayed call with audit and metrics off, --quiet-too). Installs valgrind (Debian package) when it is missing.
#   scripts/instructions.sh                      # compare with the baseline (CI)
#   scripts/instructions.sh --write bench/instructions.txt   # a new baseline: commit it and say why
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "instructions: installing valgrind (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

cargo build --release -p metamcp -p metamcp-it --bin metamcp --bin metamcp-fixture --bin metamcp-instructions >&2

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ $# -eq 0 ]; then
  set -- --baseline bench/instructions.txt --quiet-too
fi
exec "$target_dir/release/metamcp-instructions" "$@"
