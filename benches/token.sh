#!/usr/bin/env bash
# Token issuance benchmark for oauth-sidecar: client_credentials over HTTP.
#
# In one run, with the same wrk script (benches/token.lua) against each:
#
#   1. oauth-sidecar      (the thing under test): `oauth-sidecar serve` on a
#      generated config with a `server:` section, EdDSA access tokens, a
#      SQLite store in a temp dir; a confidential consumer made with
#      `oauth-sidecar consumer create` (generated secret, so the secret check
#      is the keyed HMAC, `grant_types: [client_credentials]`, acting as the
#      user `reporter` made with `oauth-sidecar user add`);
#   2. node oidc-provider (the reference a user would pick instead), version
#      OIDC_PROVIDER_VERSION, installed here with npm into a cache dir and run
#      by benches/oidc_provider.mjs in node's default single process (no
#      cluster; that is how it starts unless one adds a process manager).
#
# The reference is set up as close to ours as it allows: one confidential
# client with client_secret_basic and only the client_credentials grant, the
# same scope requested (`farm_viewer`), and JWT access tokens (RFC 9068,
# `at+jwt`) signed with EdDSA. oidc-provider issues JWT access tokens only for
# a resource server (its resource indicators feature), so every request gets
# a default resource whose format is `jwt`; such tokens are not written to its
# storage, as ours are not. What still differs: oidc-provider keeps the client
# secret in clear and compares it (ours: keyed HMAC of the presented secret),
# and its token has `sub` = the client (ours looks up the consumer's acting
# user and applies the farmOS scope policy).
#
# Every request is `POST grant_type=client_credentials&scope=farm_viewer` with
# an `Authorization: Basic` header; benches/token.lua counts every answer that
# is not 200: any such answer makes that row invalid, and it is reported.
#
# Printed: tokens/s, p50 and p99 latency, peak RSS (VmHWM) of each server,
# the server's CPU time (user + system) per token, the CPUs the server, wrk
# and everything else used during the run, the ratio ours/oidc-provider, and PASS/FAIL against the targets
# (ours >= TARGET_RPS tokens/s, ratio >= TARGET_RATIO), marked suspect when
# a row had socket errors or ran beside other busy processes. With ROUNDS > 1
# the two are measured alternately ROUNDS times and the verdict uses the
# medians.
#
# It is a measurement, not a test: it exits 0 whether the targets are met or
# not, and nonzero only when setup fails (build, install, a server that does
# not start, a first token request that does not answer 200 with a JWT).
#
# Usage: bash benches/token.sh
# Environment overrides (defaults in brackets):
#   CONNECTIONS  [64]     wrk connections (-c)
#   THREADS      [2]      wrk threads (-t)
#   DURATION     [10s]    measured wrk run per target and round (-d)
#   WARMUP       [2s]     unmeasured wrk run before each measured one
#   ROUNDS       [1]      measure both targets this many times, alternately
#   TARGET_RPS   [10000]  minimum oauth-sidecar tokens/s for PASS
#   TARGET_RATIO [10]     minimum oauth-sidecar/oidc-provider ratio for PASS
#   MAX_OTHER_CPUS [0.5]  a row during which other processes used more CPUs
#                         than this (or with socket errors) marks the verdicts
#                         suspect
#   OIDC_PROVIDER_VERSION [tests/e2e/package.json's]  the npm version installed
#   NPM_DIR      [${XDG_CACHE_HOME:-~/.cache}/oauth-sidecar-bench/oidc-provider-VERSION]
#                         where oidc-provider is installed (kept between runs)
#   SKIP_BUILD   [0]      1 = use the existing release binary as it is
#   SIDECAR_BIN  []       measure this oauth-sidecar binary instead (no build),
#                         e.g. a copy of an earlier build to compare with
#   KEEP_TMP     [0]      1 = keep the temp dir (configs, logs, raw wrk output)
#   SIDECAR_PORT [9110]   OIDC_PORT [9111]

set -euo pipefail

# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-1}"
TARGET_RPS="${TARGET_RPS:-10000}"
TARGET_RATIO="${TARGET_RATIO:-10}"
MAX_OTHER_CPUS="${MAX_OTHER_CPUS:-0.5}"
# The version the browser tests pin (tests/e2e/package.json), so the
# benchmark's reference and the tests' outside provider are the same.
E2E_PACKAGE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/package.json"
OIDC_PROVIDER_VERSION="${OIDC_PROVIDER_VERSION:-$(sed -n 's/.*"oidc-provider": *"\([^"]*\)".*/\1/p' "$E2E_PACKAGE")}"
[[ -n "$OIDC_PROVIDER_VERSION" ]] || { echo "token.sh: no oidc-provider version in $E2E_PACKAGE" >&2; exit 2; }
NPM_DIR="${NPM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-sidecar-bench/oidc-provider-$OIDC_PROVIDER_VERSION}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SIDECAR_BIN="${SIDECAR_BIN:-}"
KEEP_TMP="${KEEP_TMP:-0}"

SIDECAR_PORT="${SIDECAR_PORT:-9110}"
OIDC_PORT="${OIDC_PORT:-9111}"
HOST=127.0.0.1

CLIENT_ID=reporting
USERNAME=reporter
SCOPE=farm_viewer
BODY="grant_type=client_credentials&scope=$SCOPE"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/token-bench.XXXXXX")"
LUA="$ROOT/benches/token.lua"

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || {
    echo "error: ROUNDS must be a positive integer" >&2
    exit 1
}

# PIDs of every process this script starts, killed by the exit trap.
PIDS=()

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Cleanup: stop everything we started, whatever way the script ends.
# ---------------------------------------------------------------------------
cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "$KEEP_TMP" == 1 ]]; then
        log "kept temp dir $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Tools: wrk (with Lua), node >= 20 and npm; installed with apt if missing.
# ---------------------------------------------------------------------------
install_tools() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install $* by hand"
        sudo=(sudo)
    fi
    log "installing $* with apt"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null ||
        die "apt-get install $* failed"
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[[ ${#missing[@]} == 0 ]] || install_tools "${missing[@]}"
command -v wrk >/dev/null || die "wrk not found after install"
command -v curl >/dev/null || die "curl is needed to check that the servers answer"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm not found after install"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
((NODE_MAJOR >= 20)) || die "oidc-provider $OIDC_PROVIDER_VERSION needs node >= 20 (found $(node --version))"

# ---------------------------------------------------------------------------
# Build the sidecar; install oidc-provider.
# ---------------------------------------------------------------------------
cd "$ROOT"
if [[ -z "$SIDECAR_BIN" ]]; then
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "cargo build --release --bin oauth-sidecar"
        cargo build --release --bin oauth-sidecar || die "cargo build failed"
    fi
    # The target dir may be shared or moved (CARGO_TARGET_DIR); ask cargo where it is.
    TARGET_DIR="$(cargo metadata --no-deps --format-version 1 |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    [[ -n "$TARGET_DIR" ]] || TARGET_DIR="$ROOT/target"
    SIDECAR_BIN="$TARGET_DIR/release/oauth-sidecar"
fi
[[ -x "$SIDECAR_BIN" ]] || die "missing binary $SIDECAR_BIN"

if [[ ! -f "$NPM_DIR/node_modules/oidc-provider/package.json" ]]; then
    log "npm install oidc-provider@$OIDC_PROVIDER_VERSION into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    [[ -f "$NPM_DIR/package.json" ]] ||
        printf '{ "name": "token-bench-reference", "private": true, "type": "module" }\n' >"$NPM_DIR/package.json"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error --save-exact \
        "oidc-provider@$OIDC_PROVIDER_VERSION" >"$WORK/npm.log" 2>&1 || {
        cat "$WORK/npm.log" >&2
        die "npm install oidc-provider@$OIDC_PROVIDER_VERSION failed (log above)"
    }
fi
OIDC_INSTALLED="$(node -p "require('$NPM_DIR/node_modules/oidc-provider/package.json').version")"
[[ "$OIDC_INSTALLED" == "$OIDC_PROVIDER_VERSION" ]] ||
    die "$NPM_DIR has oidc-provider $OIDC_INSTALLED, not $OIDC_PROVIDER_VERSION"
# Next to its node_modules, so that `import 'oidc-provider'` resolves there.
cp "$ROOT/benches/oidc_provider.mjs" "$NPM_DIR/oidc_provider.mjs"

# ---------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------

# Fails (returns 1) when something already answers on the port.
port_free() {
    ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# start NAME CMD...: runs CMD in the background, logs to $WORK/NAME.log and
# records its PID in PIDS and in the variable LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_ready NAME PID URL: waits (up to ~10s) until URL answers 200, dying if
# the process exits or never answers.
wait_ready() {
    local name=$1 pid=$2 url=$3 i code
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || {
            cat "$WORK/$name.log" >&2
            die "$name exited during startup (log above)"
        }
        code="$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    cat "$WORK/$name.log" >&2
    die "$name did not answer 200 on $url (last status: ${code:-none}; log above)"
}

# CPU time (user + system) a process has used so far, in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
CLK_TCK="$(getconf CLK_TCK)"

# CPU time the whole machine has been busy (not idle, not waiting for I/O),
# in clock ticks, summed over its CPUs.
machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# Sets CHILD_SECONDS to the CPU time (user + system) of this shell's finished
# children (so: wrk), from the `times` builtin. Call it directly: inside
# $(...) it would see the subshell's children instead.
child_seconds() {
    times >"$WORK/times"
    CHILD_SECONDS="$(awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
        printf "%.3f", s
    }' "$WORK/times")"
}

# Peak resident set size (VmHWM) of one process, in MiB with one decimal.
peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# check_token NAME URL: one token request must answer 200 with an EdDSA JWT.
check_token() {
    local name=$1 url=$2 out="$WORK/first-token-$1.json" code token header
    code="$(curl -s -o "$out" -w '%{http_code}' -H "Authorization: $AUTH" \
        -H 'Content-Type: application/x-www-form-urlencoded' --data "$BODY" "$url" || true)"
    [[ "$code" == 200 ]] || die "$name: first token request answered ${code:-nothing}, not 200: $(head -c 300 "$out")"
    token="$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$out")"
    [[ "$token" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] ||
        die "$name: the first token response has no JWT access_token"
    # The JOSE header, base64url without padding.
    header="$(printf '%s' "${token%%.*}" | tr '_-' '/+')"
    while ((${#header} % 4)); do header+="="; done
    header="$(printf '%s' "$header" | base64 -d 2>/dev/null || true)"
    [[ "$header" == *'"alg":"EdDSA"'* ]] || die "$name: the access token is not EdDSA-signed (header: $header)"
    log "$name: first token request 200, JWT header $header"
}

# ---------------------------------------------------------------------------
# oauth-sidecar: config, consumer and user via the CLI, then serve.
# ---------------------------------------------------------------------------
for port in "$SIDECAR_PORT" "$OIDC_PORT"; do
    port_free "$port" || die "port $port is already in use (override with SIDECAR_PORT / OIDC_PORT)"
done

cat >"$WORK/sidecar.yaml" <<EOF
listen: $HOST:$SIDECAR_PORT
public_url: http://$HOST:$SIDECAR_PORT
upstream: demo
store: sqlite://$WORK/data/sidecar.db
log: { level: warn, access: false }
server:
  access_token_ttl: 1h
  access_token_alg: EdDSA
  roles:
    $SCOPE: { label: Viewer, description: Read farm records }
EOF
"$SIDECAR_BIN" check-config "$WORK/sidecar.yaml" >"$WORK/check-config.log" 2>&1 || {
    cat "$WORK/check-config.log" >&2
    die "oauth-sidecar check-config rejected the bench config"
}

log "oauth-sidecar consumer create --client-id $CLIENT_ID (generated secret) and user add $USERNAME"
"$SIDECAR_BIN" consumer create --config "$WORK/sidecar.yaml" --client-id "$CLIENT_ID" \
    --user-id "$USERNAME" --scope "$SCOPE" --grant-type client_credentials \
    >"$WORK/consumer.out" 2>"$WORK/consumer.err" || {
    cat "$WORK/consumer.err" >&2
    die "oauth-sidecar consumer create failed (stderr above)"
}
SECRET="$(sed -n 's/^client_secret: //p' "$WORK/consumer.out")"
# The printed secret stays in this shell; only the consumer's id is kept on disk.
rm -f "$WORK/consumer.out"
[[ -n "$SECRET" ]] || die "oauth-sidecar consumer create printed no client_secret"
head -c 24 /dev/urandom | base64 | tr -d '\n' >"$WORK/user-password"
"$SIDECAR_BIN" user add --config "$WORK/sidecar.yaml" "$USERNAME" --role "$SCOPE" \
    <"$WORK/user-password" >"$WORK/user.log" 2>&1 || {
    cat "$WORK/user.log" >&2
    die "oauth-sidecar user add failed (log above)"
}
# client_secret_basic: id and secret form-urlencoded (both are URL-safe
# already: a machine name and base64url), joined by ':', then base64.
AUTH="Basic $(printf '%s:%s' "$CLIENT_ID" "$SECRET" | base64 -w0)"

log "starting oauth-sidecar on :$SIDECAR_PORT"
start sidecar "$SIDECAR_BIN" serve --config "$WORK/sidecar.yaml"
SIDECAR_PID=$LAST_PID
wait_ready sidecar "$SIDECAR_PID" "http://$HOST:$SIDECAR_PORT/healthz"
SIDECAR_URL="http://$HOST:$SIDECAR_PORT/oauth/token"
check_token sidecar "$SIDECAR_URL"

# ---------------------------------------------------------------------------
# oidc-provider: same client id and secret, same scope.
# ---------------------------------------------------------------------------
log "starting oidc-provider $OIDC_PROVIDER_VERSION (node $(node --version), one process) on :$OIDC_PORT"
start oidc-provider env HOST="$HOST" PORT="$OIDC_PORT" CLIENT_ID="$CLIENT_ID" CLIENT_SECRET="$SECRET" \
    SCOPE="$SCOPE" NODE_ENV=production node "$NPM_DIR/oidc_provider.mjs"
OIDC_PID=$LAST_PID
wait_ready oidc-provider "$OIDC_PID" "http://$HOST:$OIDC_PORT/.well-known/openid-configuration"
OIDC_URL="http://$HOST:$OIDC_PORT/token"
check_token oidc-provider "$OIDC_URL"

# ---------------------------------------------------------------------------
# Measure
# ---------------------------------------------------------------------------

# wrk prints latencies like "812.00us", "1.23ms", "1.01s"; normalise to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n
    }'
}

# Results, by row name (target#round).
declare -A RPS P50 P99 RSS CPU CORES NON200 ERRORS
ROWS=()

# bench NAME URL PID ROUND: warm-up, then a measured wrk run with token.lua.
bench() {
    local name=$1 url=$2 pid=$3 row="$1#$4" out="$WORK/wrk-$1-$4.txt"
    log "warm-up $row ($WARMUP)"
    BENCH_AUTH="$AUTH" BENCH_BODY="$BODY" \
        wrk -t "$THREADS" -c "$CONNECTIONS" -d "$WARMUP" -s "$LUA" "$url" >/dev/null ||
        die "wrk warm-up failed for $name"
    log "measuring $row ($DURATION, $CONNECTIONS connections, $THREADS threads)"
    local ticks_before ticks_after machine_before machine_after wrk_before wrk_after t0 t1 requests
    t0="$(date +%s.%N)"
    ticks_before="$(cpu_ticks "$pid")"
    machine_before="$(machine_ticks)"
    child_seconds
    wrk_before=$CHILD_SECONDS
    BENCH_AUTH="$AUTH" BENCH_BODY="$BODY" \
        wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$LUA" --latency "$url" >"$out" ||
        die "wrk failed for $name"
    ticks_after="$(cpu_ticks "$pid")"
    machine_after="$(machine_ticks)"
    child_seconds
    wrk_after=$CHILD_SECONDS
    t1="$(date +%s.%N)"
    sed 's/^/    /' "$out" >&2

    RPS[$row]="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")"
    [[ -n "${RPS[$row]}" ]] || die "could not read Requests/sec from wrk output for $row"
    P50[$row]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    P99[$row]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    NON200[$row]="$(sed -n 's/^non-200 responses: //p' "$out")"
    [[ -n "${NON200[$row]}" ]] || die "token.lua did not report its non-200 count for $row"
    ERRORS[$row]="$(sed -n 's/^ *Socket errors: *//p' "$out")"
    ERRORS[$row]="${ERRORS[$row]:--}"
    kill -0 "$pid" 2>/dev/null || die "$name process died during the run"
    RSS[$row]="$(peak_rss_mib "$pid")"
    # The server's CPU time per token: steadier than tokens/s when other
    # work shares the machine.
    requests="$(awk '/ requests in / { print $1 }' "$out")"
    CPU[$row]="$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="${requests:-0}" \
        'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "?" }')"
    # CPUs in use during the run, on average: the server, wrk, and everything
    # else on the machine (other builds, other tenants).
    CORES[$row]="$(awk -v s=$((ticks_after - ticks_before)) -v m=$((machine_after - machine_before)) \
        -v w="$(awk -v a="$wrk_before" -v b="$wrk_after" 'BEGIN { print b - a }')" \
        -v hz="$CLK_TCK" -v dt="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" 'BEGIN {
            server = s / hz / dt; bench = w / dt; other = m / hz / dt - server - bench
            printf "%.2f/%.2f/%.2f", server, bench, (other > 0 ? other : 0)
        }')"
    ROWS+=("$row")
}

for ((round = 1; round <= ROUNDS; round++)); do
    bench sidecar "$SIDECAR_URL" "$SIDECAR_PID" "$round"
    bench oidc-provider "$OIDC_URL" "$OIDC_PID" "$round"
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

# median NAME: the median tokens/s of NAME over the rounds.
median() {
    local name=$1 round
    for ((round = 1; round <= ROUNDS; round++)); do echo "${RPS[$name#$round]}"; done | sort -n |
        awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.0f", v[(NR + 1) / 2]; else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "Token benchmark: client_credentials, client_secret_basic, EdDSA JWT access tokens;" \
    "$CONNECTIONS connections, $THREADS wrk threads, $DURATION per target and round ($WARMUP warm-up)," \
    "$ROUNDS round(s), $(nproc) CPUs"
echo "reference: oidc-provider $OIDC_INSTALLED on node $(node --version), one process"
echo
printf '%-18s %9s %8s %8s %13s %13s %22s %8s  %s\n' target tokens/s p50_ms p99_ms peak_rss_MiB \
    cpu_us/token cpus_server/wrk/other non-200 socket_errors
for row in "${ROWS[@]}"; do
    printf '%-18s %9s %8s %8s %13s %13s %22s %8s  %s\n' "$row" "${RPS[$row]}" "${P50[$row]}" \
        "${P99[$row]}" "${RSS[$row]}" "${CPU[$row]}" "${CORES[$row]}" "${NON200[$row]}" "${ERRORS[$row]}"
done
echo

OURS="$(median sidecar)"
THEIRS="$(median oidc-provider)"
RATIO="$(ratio "$OURS" "$THEIRS")"
INVALID=()
SUSPECT=()
for row in "${ROWS[@]}"; do
    [[ "${NON200[$row]}" == 0 ]] || INVALID+=("$row")
    [[ "${ERRORS[$row]}" == - ]] ||
        SUSPECT+=("$row had socket errors (${ERRORS[$row]}): requests went unanswered")
    other="${CORES[$row]##*/}"
    if awk -v o="$other" -v m="$MAX_OTHER_CPUS" 'BEGIN { exit !(o + 0 > m + 0) }'; then
        SUSPECT+=("$row ran while other processes used $other CPUs (more than $MAX_OTHER_CPUS)")
    fi
done
# PASS or FAIL, marked suspect when a row was disturbed; INVALID RUN when any
# row had a non-200 answer.
verdict() {
    local v
    if [[ ${#INVALID[@]} != 0 ]]; then
        echo "INVALID RUN"
        return
    elif awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; then
        v=PASS
    else
        v=FAIL
    fi
    [[ ${#SUSPECT[@]} == 0 ]] || v+=" (suspect, see below)"
    echo "$v"
}

[[ "$ROUNDS" == 1 ]] || echo "(figures below are medians over $ROUNDS rounds)"
echo "oauth-sidecar tokens/s:       $OURS  (target >= $TARGET_RPS: $(verdict "$OURS" "$TARGET_RPS"))"
echo "oidc-provider tokens/s:       $THEIRS"
echo "oauth-sidecar/oidc-provider:  $RATIO  (target >= $TARGET_RATIO: $(verdict "$RATIO" "$TARGET_RATIO"))"

for row in "${INVALID[@]}"; do
    echo "INVALID: $row answered ${NON200[$row]} non-200 responses; its figures do not count" \
        "(first status: $(sed -n 's/^first non-200 status: //p' "$WORK/wrk-${row%#*}-${row#*#}.txt"))"
done
for why in "${SUSPECT[@]}"; do
    echo "SUSPECT: $why; run again on a quieter machine"
done

# A measurement, not a test: exit 0 whatever the verdict.
exit 0
