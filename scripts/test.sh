#!/usr/bin/env bash
# Installs what the tests need and runs every check: formatting, clippy with
# warnings as errors, unit, integration and doc tests. Run from anywhere:
#
#   bash scripts/test.sh
#
# Needs a Rust toolchain (cargo with rustfmt and clippy). Installs Debian
# packages with apt when a test needs one (none yet beyond the toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use; empty while every test needs only cargo.
APT_PACKAGES=()

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --locked --no-fail-fast
    cargo test --doc --locked
else
    cargo test --all-targets --locked --no-fail-fast
    cargo test --doc --locked
fi

echo "==> config/ files pass check-config"
for f in config/*.yaml; do
    cargo run --quiet --locked -- check-config "$f" >/dev/null
done
echo "all checks passed"
