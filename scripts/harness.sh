#!/usr/bin/env bash
# The test harness: installs (when missing) and starts real PostgreSQL 15, an
# S3 server (s3s-fs), a Kafka-API broker (Tansu) and VictoriaMetrics on free
# loopback ports, and stops them.
#
#   scripts/harness.sh install         install what is missing, start nothing
#   scripts/harness.sh start DIR       start both servers under DIR (a new,
#                                      empty folder) and write DIR/env
#   scripts/harness.sh stop DIR        stop them and delete DIR
#
# DIR/env holds the variables the tests read: TXFLOW_TEST_DATABASE_URL (a
# superuser URL; tests create their own databases), TXFLOW_TEST_S3_ENDPOINT,
# TXFLOW_TEST_S3_BUCKET and the AWS_* credentials of the S3 server,
# TXFLOW_TEST_KAFKA_BROKERS (host:port of the broker, memory storage), a
# TLS-only PostgreSQL (TXFLOW_TEST_PG_TLS_URL with its password, without
# sslmode; TXFLOW_TEST_PG_TLS_CA, the CA that signed its certificate for
# "localhost"; TXFLOW_TEST_PG_TLS_OTHER_CA, one that did not;
# TXFLOW_TEST_PG_TLS_ADMIN, its Unix socket for the tests' set-up), and
# VictoriaMetrics (TXFLOW_TEST_VM_URL, http://host:port), and
# headless Chromium (TXFLOW_TEST_CHROMIUM), and
# the servers' binaries (TXFLOW_TEST_PG_BIN, TXFLOW_TEST_VM_BIN, TXFLOW_TEST_TANSU_BIN,
# TXFLOW_TEST_S3S_BIN) for tests that start, stop and restart servers of
# their own (a restart of the shared ones would disturb the other tests).
# Tools are installed once into $TXFLOW_CACHE (default ~/.cache/txflow) and
# reused by later runs and fresh clones on the same machine.
set -euo pipefail

CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
S3S_VERSION=0.14.1
TANSU_VERSION=0.6.0

log() { echo "harness: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install() {
  install_packages
  install_tools
}

install_packages() {
  # openssl makes the tests' throwaway certificates; libssl-dev and
  # pkg-config let librdkafka build with TLS (rdkafka's ssl feature).
  local missing=()
  [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
  # promtool checks /metrics and unit-tests the alert rules; Prometheus
  # scrapes a running pipeline in a test; batch runs push to the Pushgateway.
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  # Headless Chromium looks at the pages txflow writes (evaluate --html).
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The servers built from crates.io (the biggest cost of a fresh machine;
# scripts/test.sh runs this beside the project's own build).
install_tools() {
  if [ ! -x "$CACHE/bin/s3s-fs" ]; then
    log "installing s3s-fs $S3S_VERSION into $CACHE (a few minutes, once)"
    cargo install --locked "s3s-fs@$S3S_VERSION" --features binary --root "$CACHE" >&2
  fi
  if [ ! -x "$CACHE/bin/tansu" ]; then
    log "installing tansu $TANSU_VERSION into $CACHE (about 10 minutes, once)"
    cargo install --locked "tansu@$TANSU_VERSION" --features postgres,dynostore --root "$CACHE" >&2
  fi
}

# Waits up to 10 s for something to listen on a loopback port.
wait_port() {
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on 127.0.0.1:$1 after 10 s"
  return 1
}

# Runs a command as the postgres user when we are root (the server refuses
# to run as root), as ourselves otherwise.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A second PostgreSQL for the TLS tests: ssl=on with a certificate for
# "localhost" signed by a throwaway CA (made here with openssl, valid two
# days), reachable over TCP by TLS only (hostssl, password), and over its
# Unix socket without a password for the tests' set-up. Sets TLS_PORT and
# TLS_PASSWORD.
start_tls_postgres() {
  local dir=$1 tls=$1/pgtls
  TLS_PORT=$(free_port)
  TLS_PASSWORD=$(openssl rand -hex 16)
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=txflow test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
      -keyout other-ca.key -out other-ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
    printf '%s\n' "$TLS_PASSWORD" >pwfile
    chmod 600 server.key pwfile
  )
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tls"; chmod 755 "$tls"; fi
  as_pg "$PG_BIN/initdb" -D "$tls/data" -U txflow --pwfile="$tls/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >"$tls/data/pg_hba.conf" <<HBA
local   all all                trust
hostssl all all 127.0.0.1/32   scram-sha-256
hostssl all all ::1/128        scram-sha-256
HBA
  as_pg "$PG_BIN/pg_ctl" -D "$tls/data" -l "$tls/server.log" -w start -o "\
    -c listen_addresses=localhost -c port=$TLS_PORT -c unix_socket_directories=$tls \
    -c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  log "PostgreSQL 15 with TLS only on localhost:$TLS_PORT"
}

start() {
  local dir=$1
  if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    log "$dir is not empty: give start a new or empty folder (or run: $0 stop $dir)"
    exit 1
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir" # the postgres user must reach its data folder
  install

  local pg_port s3_port
  pg_port=$(free_port)
  mkdir -p "$dir/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pg"; chmod 700 "$dir/pg"; fi
  as_pg "$PG_BIN/initdb" -D "$dir/pg/data" -U txflow -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  # Durability is off for tests (TXFLOW_PG_DURABLE=1 keeps it on, for benchmarks).
  local opts="-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$dir/pg"
  if [ "${TXFLOW_PG_DURABLE:-0}" != 1 ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -o "$opts" -w start >/dev/null
  log "PostgreSQL 15 on 127.0.0.1:$pg_port"

  start_tls_postgres "$dir"

  s3_port=$(free_port)
  mkdir -p "$dir/s3/txflow-test"
  "$CACHE/bin/s3s-fs" --host 127.0.0.1 --port "$s3_port" \
    --access-key txflow-test --secret-key txflow-test-secret "$dir/s3" >"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  wait_port "$s3_port"
  log "s3s-fs on 127.0.0.1:$s3_port"

  local kafka_port
  kafka_port=$(free_port)
  "$CACHE/bin/tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ \
    >"$dir/tansu.log" 2>&1 &
  echo $! >"$dir/tansu.pid"
  wait_port "$kafka_port"
  log "tansu (Kafka API) on 127.0.0.1:$kafka_port"

  # VictoriaMetrics, the line-protocol sink's store: fresh points visible at
  # once, historical points kept (the default retention is one month), and a
  # replayed point (same series and millisecond) replacing the first.
  local vm_port
  vm_port=$(free_port)
  victoria-metrics -httpListenAddr="127.0.0.1:$vm_port" -storageDataPath="$dir/vm" \
    -retentionPeriod=100y -search.latencyOffset=0s -dedup.minScrapeInterval=1ms \
    >"$dir/vm.log" 2>&1 &
  echo $! >"$dir/vm.pid"
  wait_port "$vm_port"
  log "VictoriaMetrics on 127.0.0.1:$vm_port"

  # The Pushgateway, where batch runs push their metrics.
  local push_port
  push_port=$(free_port)
  prometheus-pushgateway --web.listen-address="127.0.0.1:$push_port" \
    >"$dir/pushgateway.log" 2>&1 &
  echo $! >"$dir/pushgateway.pid"
  wait_port "$push_port"
  log "Pushgateway on 127.0.0.1:$push_port"

  cat >"$dir/env" <<ENV
export TXFLOW_TEST_DATABASE_URL=postgres://txflow@127.0.0.1:$pg_port/postgres
export TXFLOW_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export TXFLOW_TEST_S3_BUCKET=txflow-test
export AWS_ACCESS_KEY_ID=txflow-test
export AWS_SECRET_ACCESS_KEY=txflow-test-secret
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export TXFLOW_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port
export TXFLOW_TEST_PG_TLS_URL=postgres://txflow:$TLS_PASSWORD@localhost:$TLS_PORT/postgres
export TXFLOW_TEST_PG_TLS_ADMIN="host=$dir/pgtls port=$TLS_PORT user=txflow dbname=postgres"
export TXFLOW_TEST_PG_TLS_PASSWORD=$TLS_PASSWORD
export TXFLOW_TEST_PG_TLS_CA=$dir/pgtls/ca.pem
export TXFLOW_TEST_PG_TLS_OTHER_CA=$dir/pgtls/other-ca.pem
export TXFLOW_TEST_PG_BIN=$PG_BIN
export TXFLOW_TEST_TANSU_BIN=$CACHE/bin/tansu
export TXFLOW_TEST_S3S_BIN=$CACHE/bin/s3s-fs
export TXFLOW_TEST_VM_URL=http://127.0.0.1:$vm_port
export TXFLOW_TEST_VM_BIN=$(command -v victoria-metrics)
export TXFLOW_TEST_PUSHGATEWAY_URL=http://127.0.0.1:$push_port
export TXFLOW_TEST_PROMTOOL=$(command -v promtool)
export TXFLOW_TEST_PROMETHEUS_BIN=$(command -v prometheus)
export TXFLOW_TEST_CHROMIUM=$(command -v chromium)
ENV
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  for pid in "$dir/s3.pid" "$dir/tansu.pid" "$dir/vm.pid" "$dir/pushgateway.pid"; do
    if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  done
  for cluster in pg pgtls; do
    if [ -f "$dir/$cluster/data/postmaster.pid" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$dir/$cluster/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  install-packages) install_packages ;;
  install-tools) install_tools ;;
  start) start "${2:?usage: harness.sh start DIR}" ;;
  stop) stop "${2:?usage: harness.sh stop DIR}" ;;
  *) echo "usage: $0 install | install-packages | install-tools | start DIR | stop DIR" >&2; exit 2 ;;
esac
