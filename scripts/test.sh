#!/usr/bin/env bash
# Installs what the tests need and runs every check: formatting, clippy with
# warnings as errors, unit, integration and doc tests, browser tests. Run
# from anywhere:
#
#   bash scripts/test.sh
#
# Needs a Rust toolchain (cargo with rustfmt and clippy). Installs Debian
# packages with apt when a test needs one: PostgreSQL, which the store tests
# and the multi-replica tests run against. The server is started on loopback
# (127.0.0.1:$PGPORT, default 5432) with TLS on, and its URL exported as
# OAUTH_SIDECAR_TEST_POSTGRES; set that variable yourself to use another
# server (a database its user may create schemas in), and nothing is installed.
#
# nginx-light and caddy, which tests/forward_auth.rs runs in front of the
# sidecar (OAUTH_SIDECAR_REQUIRE_PROXIES=1 makes it fail without them).
#
# Then the browser tests (tests/e2e): chromium, and node with npm when node
# is missing, from apt (node 20 or newer, which oidc-provider needs: this
# machine image ships it; Debian 12's own is 18); playwright-core and
# oidc-provider (the outside provider on another origin), openid-client
# and jose (a relying party for the logout test) with `npm ci`;
# `node --test` on the built binary. Last, the README's blocks marked
# runnable, word for word, against that binary (scripts/readme.py; curl).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use.
APT_PACKAGES=()
if [ -z "${OAUTH_SIDECAR_TEST_POSTGRES:-}" ]; then
    APT_PACKAGES+=(postgresql)
fi
# The README's runnable blocks call curl.
command -v curl >/dev/null 2>&1 || APT_PACKAGES+=(curl)
# tests/forward_auth.rs runs real nginx (auth_request) and Caddy in front of
# the sidecar, and fails instead of skipping when either is missing.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || APT_PACKAGES+=(nginx-light)
command -v caddy >/dev/null 2>&1 || APT_PACKAGES+=(caddy)
export OAUTH_SIDECAR_REQUIRE_PROXIES=1
# The browser tests launch /usr/bin/chromium from node.
[ -x /usr/bin/chromium ] || APT_PACKAGES+=(chromium)
if ! command -v node >/dev/null 2>&1; then
    APT_PACKAGES+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    APT_PACKAGES+=(npm)
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        # Installed, not just known (a removed package keeps its config files).
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

# Runs a command as the `postgres` system user (from root, or through sudo).
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    elif [ "$(id -un)" = postgres ]; then
        "$@"
    else
        sudo -u postgres "$@"
    fi
}

# The store tests connect with sslmode=require too. Debian's clusters have
# `ssl = on` with the snakeoil certificate of the ssl-cert package; a cluster
# made without is given it.
enable_postgres_tls() {
    local port=$1 cert=/etc/ssl/certs/ssl-cert-snakeoil.pem key=/etc/ssl/private/ssl-cert-snakeoil.key
    local show=(psql -qtA -h /var/run/postgresql -p "$port" -c "SHOW ssl")
    [ "$(as_postgres "${show[@]}")" = on ] && return
    if [ ! -f "$key" ]; then
        echo "==> installing ssl-cert (a snakeoil certificate for PostgreSQL)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ssl-cert
        as_root make-ssl-cert generate-default-snakeoil
    fi
    # The server reads the key as postgres, a member of ssl-cert.
    id -nG postgres | grep -qw ssl-cert || as_root usermod -a -G ssl-cert postgres
    echo "==> turning on TLS in PostgreSQL (snakeoil certificate)"
    as_postgres psql -q -h /var/run/postgresql -p "$port" -v ON_ERROR_STOP=1 \
        -c "ALTER SYSTEM SET ssl_cert_file = '$cert'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$key'" \
        -c "ALTER SYSTEM SET ssl = on"
    read -r version cluster _ < <(pg_lsclusters -h | head -1)
    if [ "$(id -u)" -eq 0 ]; then pg_ctlcluster "$version" "$cluster" restart
    else as_postgres pg_ctlcluster "$version" "$cluster" restart; fi
    for _ in $(seq 1 30); do
        as_postgres pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 1
    done
    if [ "$(as_postgres "${show[@]}")" != on ]; then
        echo "PostgreSQL did not turn on TLS; see its log (pg_lsclusters)" >&2
        exit 1
    fi
}

start_postgres() {
    local port="${PGPORT:-5432}" password=sidecar-test
    if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
        local version
        version=$(ls /usr/lib/postgresql | sort -n | tail -1)
        echo "==> creating PostgreSQL cluster $version/main"
        as_root pg_createcluster "$version" main --port "$port"
    fi
    read -r version cluster cport status _ < <(pg_lsclusters -h | head -1)
    port=$cport
    if [ "$status" != online ]; then
        echo "==> starting PostgreSQL $version/$cluster on 127.0.0.1:$port"
        # pg_ctlcluster as root, or as postgres (who owns the cluster) otherwise.
        if [ "$(id -u)" -eq 0 ]; then pg_ctlcluster "$version" "$cluster" start
        else as_postgres pg_ctlcluster "$version" "$cluster" start; fi
    fi
    for _ in $(seq 1 30); do
        as_postgres pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 1
    done
    enable_postgres_tls "$port"
    # A login for the tests and a database they own, recreated empty each run.
    as_postgres psql -q -h /var/run/postgresql -p "$port" -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
SELECT 'CREATE ROLE sidecar LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sidecar')\gexec
ALTER ROLE sidecar LOGIN PASSWORD '$password';
DROP DATABASE IF EXISTS sidecar_test WITH (FORCE);
CREATE DATABASE sidecar_test OWNER sidecar;
SQL
    export OAUTH_SIDECAR_TEST_POSTGRES="postgres://sidecar:$password@127.0.0.1:$port/sidecar_test"
    echo "==> PostgreSQL ready: postgres://sidecar:[redacted]@127.0.0.1:$port/sidecar_test"
}

if [ -z "${OAUTH_SIDECAR_TEST_POSTGRES:-}" ]; then
    start_postgres
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "==> the gate alone: default-features = false, features = [\"gate\"]"
cargo check --locked --no-default-features --features gate
cargo build --locked --no-default-features --features gate --example axum_service
# A service using only the gate's layers compiles none of these.
heavy=$(cargo tree --locked -e normal --no-default-features --features gate --prefix none |
    grep -E '^(sqlx|argon2|minijinja|chacha20poly1305|opentelemetry|tonic) ' | sort -u || true)
if [ -n "$heavy" ]; then
    echo "the gate alone pulls in: $heavy" >&2
    exit 1
fi

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --locked --no-fail-fast
    cargo test --doc --locked
else
    cargo test --all-targets --locked --no-fail-fast
    cargo test --doc --locked
fi

echo "==> property tests (src/proptests.rs), ${PROPTEST_CASES:-256} cases per property"
PROPTEST_CASES="${PROPTEST_CASES:-256}" cargo test --lib --locked proptests -- --nocapture --test-threads 1

echo "==> kill -9 durability (tests/kill9.sh: answered writes survive SIGKILL on SQLite)"
bash tests/kill9.sh

echo "==> config/ files pass check-config"
for f in config/*.yaml; do
    cargo run --quiet --locked -- check-config "$f" >/dev/null
done

echo "==> the container image's build context compiles (scripts/docker-context.py)"
python3 scripts/docker-context.py

echo "==> browser tests (tests/e2e: playwright-core driving /usr/bin/chromium)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "the browser tests need node 20 or newer (oidc-provider); $(command -v node) is $(node --version)" >&2
    exit 1
fi
# The binary under test: the debug build in cargo's target folder.
cargo build --quiet --locked --bin oauth-sidecar
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
export OAUTH_SIDECAR_BIN="$target_dir/debug/oauth-sidecar"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
node --test tests/e2e/*.test.mjs
echo "    screenshots in target/e2e/screenshots, sidecar logs in target/e2e/logs"

echo "==> the README's runnable blocks, word for word (scripts/readme.py)"
python3 scripts/readme.py "$OAUTH_SIDECAR_BIN"
echo "all checks passed"
