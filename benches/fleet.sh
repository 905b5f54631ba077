#!/usr/bin/env bash
# Fleet deploy measurements (docs/fleet.md "Measured"), reproducible:
#   - the mixed-version window (first to last node's rename, from the links'
#     ctimes) over N fleet deploys, p50/p99, and the fleet deploy's time
#     beyond the slowest node's own steps (p50/p99), without load;
#   - the same deploys under load: three checker threads through nginx +
#     php-fpm (OPcache on, validate_timestamps=0) and an uploader, with the
#     request, failed, torn and upload counts;
#   - optionally (--faults) the fault runs: the etcd leader paused 5 s in
#     each of N deploys, and the network test bed (tests/fleet_net.rs:
#     partitions, the etcd leader cut off, a node or an etcd member 100 ms away).
# Each figure comes from the integration tests, which assert what must hold
# (0 failed, 0 torn, every node on the last commit) and print one line.
#
# Usage: benches/fleet.sh [--runs N] [--deploys N] [--faults]
#   --runs N      how many times to run each measurement (default 3)
#   --deploys N   fleet deploys per run (default 20); also the paused-leader runs
#   --faults      also run the fault tests (needs root for the namespaces)
#
# Needs etcd (Debian: etcd-server), nginx and php-fpm; say the machine and
# what else ran on it when you quote the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
DEPLOYS=20
FAULTS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --deploys) DEPLOYS="$2"; shift 2 ;;
        --faults) FAULTS=1; shift ;;
        *) echo "usage: $0 [--runs N] [--deploys N] [--faults]" >&2; exit 2 ;;
    esac
done

export ROOTSWAP_FLEET_DEPLOYS="$DEPLOYS" ROOTSWAP_PAUSE_RUNS="$DEPLOYS"
cargo test --test integration --no-run -q 2>/dev/null || cargo test --test integration --no-run

run() { # filter, pattern of the line to keep
    cargo test -q --test integration "$1" -- --exact --nocapture 2>&1 | grep -E "$2" || {
        echo "$1 failed; rerun: cargo test --test integration $1 -- --exact --nocapture" >&2
        return 1
    }
}

echo "# $(date -u +%FT%TZ) on $(uname -n): $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$RUNS"); do
    echo "## run $r"
    run fleet::twenty_deploys_report_the_mixed_version_window '^fleet: '
    run fleet::twenty_deploys_under_load_through_nginx_and_php_fpm '^fleet under load: '
    if [ "$FAULTS" = 1 ]; then
        run fleet::a_paused_etcd_leader_does_not_stop_a_fleet_deploy '^paused etcd leader: '
        run fleet_net::a_node_100_ms_away_from_etcd '^n2 100 ms away: '
        run fleet_net::the_etcd_leader_partitioned_during_a_deploy '^etcd leader .* cut off'
        run fleet_net::an_etcd_member_100_ms_away '^e2 100 ms away: '
    fi
done
