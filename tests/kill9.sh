#!/usr/bin/env bash
# kill -9 durability: while clients redeem codes, rotate refresh tokens and
# create consumers against the real binary on a SQLite file, SIGKILL the
# sidecar and start it again, several times; every write that was answered
# with a 2xx must still be there, and SQLite's integrity_check must say ok.
# Prints how many answered writes it made and that all survived; exits
# non-zero when one was lost. The driver is tests/kill9/driver.rs.
#
#   bash tests/kill9.sh            (CYCLES=4 LOAD_MS=1500 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked --bin oauth-sidecar --example kill9
target_dir=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/examples/kill9" "$target_dir/debug/oauth-sidecar"
