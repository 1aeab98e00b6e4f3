#!/usr/bin/env bash
# The test harness: installs (when missing) and starts real PostgreSQL 15, an
# S3 server (s3s-fs), Apache Kafka 3.9 (built from ../shared/kafka's kit) and
# VictoriaMetrics on free loopback ports, and stops them.
#
#   scripts/harness.sh install         install what is missing, start nothing
#   scripts/harness.sh start DIR       start both servers under DIR (a new,
#                                      empty folder) and write DIR/env
#   scripts/harness.sh stop DIR        stop them and delete DIR
#
# DIR/env holds the variables the tests read: TXFLOW_TEST_DATABASE_URL (a
# superuser URL; tests create their own databases), TXFLOW_TEST_S3_ENDPOINT,
# TXFLOW_TEST_S3_BUCKET and the AWS_* credentials of the S3 server,
# TXFLOW_TEST_KAFKA_BROKERS (host:port of Apache Kafka's PLAINTEXT
# listener), its SASL_SSL listener (TXFLOW_TEST_KAFKA_SASL_SSL_BROKERS,
# SCRAM-SHA-512 user TXFLOW_TEST_KAFKA_USER with TXFLOW_TEST_KAFKA_PASSWORD,
# certificate signed by TXFLOW_TEST_KAFKA_CA; TXFLOW_TEST_KAFKA_OTHER_CA did
# not sign it) and its SASL_PLAINTEXT one (TXFLOW_TEST_KAFKA_SASL_BROKERS), a
# TLS-only PostgreSQL (TXFLOW_TEST_PG_TLS_URL with its password, without
# sslmode; TXFLOW_TEST_PG_TLS_CA, the CA that signed its certificate for
# "localhost"; TXFLOW_TEST_PG_TLS_OTHER_CA, one that did not;
# TXFLOW_TEST_PG_TLS_ADMIN, its Unix socket for the tests' set-up), and
# VictoriaMetrics (TXFLOW_TEST_VM_URL, http://host:port), and
# headless Chromium (TXFLOW_TEST_CHROMIUM), the Python of a venv with
# delta-rs and polars (TXFLOW_TEST_DELTA_PYTHON), and
# the servers' binaries (TXFLOW_TEST_PG_BIN, TXFLOW_TEST_VM_BIN,
# TXFLOW_TEST_KAFKA_DIST, TXFLOW_TEST_S3S_BIN) for tests that start, stop and
# restart servers of their own (a restart of the shared ones would disturb
# the other tests). With TXFLOW_HARNESS_TANSU=1, also Tansu 0.6 (installed
# then), memory storage, at TXFLOW_TEST_TANSU_BROKERS: the benchmarks'
# second broker.
# Tools are installed once into $TXFLOW_CACHE (default ~/.cache/txflow) and
# reused by later runs and fresh clones on the same machine.
set -euo pipefail

CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The Apache Kafka build kit, beside the repository (CI puts ../shared there).
KAFKA_KIT=${TXFLOW_KAFKA_KIT:-$ROOT/../shared/kafka}
KAFKA_DIST=$CACHE/kafka/kafka-dist
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
S3S_VERSION=0.14.1
# The Delta tests' readers: delta-rs and polars, from PyPI, in a venv.
DELTA_VENV=$CACHE/delta-venv
DELTA_READERS="deltalake==1.6.6 polars==2.1.0"
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
  if [ "${TXFLOW_HARNESS_TANSU:-0}" = 1 ] && [ ! -x "$CACHE/bin/tansu" ]; then
    log "installing tansu $TANSU_VERSION into $CACHE (about 10 minutes, once)"
    cargo install --locked "tansu@$TANSU_VERSION" --features postgres,dynostore --root "$CACHE" >&2
  fi
  if [ ! -f "$DELTA_VENV/.installed" ] || [ "$(cat "$DELTA_VENV/.installed")" != "$DELTA_READERS" ]; then
    log "installing $DELTA_READERS into $DELTA_VENV (PyPI, once)"
    rm -rf "$DELTA_VENV"
    python3 -m venv "$DELTA_VENV"
    # shellcheck disable=SC2086
    "$DELTA_VENV/bin/pip" install --quiet $DELTA_READERS >&2
    echo "$DELTA_READERS" >"$DELTA_VENV/.installed"
  fi
  if [ ! -f "$KAFKA_DIST/.built" ]; then
    if [ ! -x "$KAFKA_KIT/build-kafka.sh" ]; then
      log "no Apache Kafka build kit at $KAFKA_KIT: put the shared folder beside the repository or set TXFLOW_KAFKA_KIT"
      exit 1
    fi
    log "building Apache Kafka 3.9 into $CACHE/kafka (3 CPU-minutes and a 650 MB download, once)"
    "$KAFKA_KIT/build-kafka.sh" "$CACHE/kafka" >&2
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

# In DIR: a throwaway CA (ca.pem, ca.key) named NAME, another CA that signs
# nothing (other-ca.pem), and a certificate of the first for "localhost"
# with the subjectAltName SAN (server.pem, server.key); valid two days.
make_certs() {
  local dir=$1 name=$2 san=$3
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$name" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
      -keyout other-ca.key -out other-ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
  )
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
  make_certs "$tls" "txflow test CA" "DNS:localhost"
  printf '%s\n' "$TLS_PASSWORD" >"$tls/pwfile"
  chmod 600 "$tls/server.key" "$tls/pwfile"
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

# Apache Kafka, one KRaft node (the kit's template): PLAINTEXT, SASL_PLAINTEXT
# and SASL_SSL listeners (SCRAM-SHA-512; a certificate for 127.0.0.1 and
# localhost signed by a throwaway CA), topics created only when asked for (as
# production brokers are set), small internal topics (a quicker first group
# and transaction). Sets KAFKA_PORT, KAFKA_SASL_PORT, KAFKA_SASL_SSL_PORT and
# KAFKA_PASSWORD (of the user txflow).
start_kafka() {
  local dir=$1/kafka controller
  mkdir -p "$dir/tls" "$dir/data" "$dir/logs"
  KAFKA_PORT=$(free_port)
  KAFKA_SASL_PORT=$(free_port)
  KAFKA_SASL_SSL_PORT=$(free_port)
  controller=$(free_port)
  KAFKA_PASSWORD=$(openssl rand -hex 16)
  make_certs "$dir/tls" "txflow Kafka test CA" "IP:127.0.0.1,DNS:localhost"
  openssl pkcs12 -export -in "$dir/tls/server.pem" -inkey "$dir/tls/server.key" \
    -certfile "$dir/tls/ca.pem" -out "$dir/tls/broker.p12" -passout pass:changeit
  sed -e "s|@CONTROLLER_PORT@|$controller|g" -e "s|@SASL_SSL_PORT@|$KAFKA_SASL_SSL_PORT|g" \
    -e "s|@SASL_PLAIN_PORT@|$KAFKA_SASL_PORT|g" -e "s|@PLAIN_PORT@|$KAFKA_PORT|g" \
    -e "s|@DATA_DIR@|$dir/data|g" -e "s|@TLS_DIR@|$dir/tls|g" \
    "$KAFKA_KIT/secure.properties.template" >"$dir/server.properties"
  cat >>"$dir/server.properties" <<PROPS
auto.create.topics.enable=false
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
PROPS
  # A cluster id is 16 random bytes in URL-safe base64 (what
  # kafka-storage.sh random-uuid prints, without starting a JVM), drawn
  # again when it starts with '-' as Kafka's own does: `-t -xyz…` is read
  # as a missing argument (one start in 64 failed with "argument
  # --cluster-id/-t: expected one argument").
  local cluster
  cluster=$(python3 -c '
import base64, os
while True:
    id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break')
  KAFKA_HEAP_OPTS="-Xmx256m" "$KAFKA_DIST/bin/kafka-storage.sh" format -t "$cluster" \
    -c "$dir/server.properties" \
    --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]' \
    --add-scram "SCRAM-SHA-512=[name=txflow,password=$KAFKA_PASSWORD]" >"$dir/format.log" 2>&1
  KAFKA_HEAP_OPTS="-Xmx512m -Xms256m" KAFKA_JMX_OPTS="-Dnojmx=true" LOG_DIR="$dir/logs" \
    KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=file:$KAFKA_DIST/config/log4j2.properties" \
    "$KAFKA_DIST/bin/kafka-server-start.sh" "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$1/kafka.pid"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$dir/kafka.log"; then
      log "Apache Kafka 3.9 on 127.0.0.1:$KAFKA_PORT (SASL_SSL :$KAFKA_SASL_SSL_PORT, SASL_PLAINTEXT :$KAFKA_SASL_PORT)"
      return 0
    fi
    if ! kill -0 "$(cat "$1/kafka.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "Apache Kafka did not start; its output:"
  tail -20 "$dir/kafka.log" >&2
  return 1
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

  start_kafka "$dir"

  # Tansu beside it, for benchmarks that compare the two brokers.
  local tansu_port=
  if [ "${TXFLOW_HARNESS_TANSU:-0}" = 1 ]; then
    tansu_port=$(free_port)
    "$CACHE/bin/tansu" broker --listener-url "tcp://127.0.0.1:$tansu_port" \
      --advertised-listener-url "tcp://127.0.0.1:$tansu_port" --storage-engine memory://tansu/ \
      >"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/tansu.pid"
    wait_port "$tansu_port"
    log "tansu (Kafka API) on 127.0.0.1:$tansu_port"
  fi

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
export TXFLOW_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export TXFLOW_TEST_KAFKA_SASL_BROKERS=127.0.0.1:$KAFKA_SASL_PORT
export TXFLOW_TEST_KAFKA_SASL_SSL_BROKERS=127.0.0.1:$KAFKA_SASL_SSL_PORT
export TXFLOW_TEST_KAFKA_USER=txflow
export TXFLOW_TEST_KAFKA_PASSWORD=$KAFKA_PASSWORD
export TXFLOW_TEST_KAFKA_CA=$dir/kafka/tls/ca.pem
export TXFLOW_TEST_KAFKA_OTHER_CA=$dir/kafka/tls/other-ca.pem
export TXFLOW_TEST_KAFKA_DIST=$KAFKA_DIST
export TXFLOW_TEST_PG_TLS_URL=postgres://txflow:$TLS_PASSWORD@localhost:$TLS_PORT/postgres
export TXFLOW_TEST_PG_TLS_ADMIN="host=$dir/pgtls port=$TLS_PORT user=txflow dbname=postgres"
export TXFLOW_TEST_PG_TLS_PASSWORD=$TLS_PASSWORD
export TXFLOW_TEST_PG_TLS_CA=$dir/pgtls/ca.pem
export TXFLOW_TEST_PG_TLS_OTHER_CA=$dir/pgtls/other-ca.pem
export TXFLOW_TEST_PG_BIN=$PG_BIN
export TXFLOW_TEST_TANSU_BROKERS=${tansu_port:+127.0.0.1:$tansu_port}
export TXFLOW_TEST_S3S_BIN=$CACHE/bin/s3s-fs
export TXFLOW_TEST_DELTA_PYTHON=$DELTA_VENV/bin/python
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
  for pid in "$dir/s3.pid" "$dir/kafka.pid" "$dir/tansu.pid" "$dir/vm.pid" "$dir/pushgateway.pid"; do
    if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  done
  # Kafka takes a few seconds to stop; its files go after it.
  if [ -f "$dir/kafka.pid" ]; then
    for _ in $(seq 1 100); do
      kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || break
      sleep 0.1
    done
  fi
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
