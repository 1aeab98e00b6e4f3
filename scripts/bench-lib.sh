# Shared by the benchmark scripts (sourced, not run): the release binary, a
# work directory, the harness's servers, a free port, and one cleanup on
# exit that runs what each step registered, last first.

bench_cleanups=()

# on_exit CMD: runs CMD (a shell string) when the script exits.
on_exit() {
  bench_cleanups+=("$1")
}

bench_cleanup() {
  local i
  for ((i = ${#bench_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${bench_cleanups[$i]}" || true
  done
}
trap bench_cleanup EXIT

# bench_build: the release binary, built if needed; sets txflow.
bench_build() {
  cargo build --release --locked -p txflow-cli >&2
  txflow=$PWD/target/release/txflow
}

# bench_work NAME: a temporary directory, removed on exit; sets work.
bench_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-$1.XXXXXX")
  chmod 755 "$work"
  on_exit "rm -rf '$work'"
}

# bench_harness: the harness's servers in $work/harness (PostgreSQL with
# fsync on unless TXFLOW_PG_DURABLE says otherwise), their variables
# sourced, stopped on exit; sets harness.
bench_harness() {
  harness="$work/harness"
  on_exit "scripts/harness.sh stop '$harness'"
  TXFLOW_PG_DURABLE=${TXFLOW_PG_DURABLE:-1} scripts/harness.sh start "$harness" 2>/dev/null
  # shellcheck disable=SC1091
  source "$harness/env"
}

# free_port: a free loopback port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# machine: one line on the machine the figures come from.
machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
}

# wait_drained URL ROWS PID LOG: waits until the stream offsets stored in
# the database at URL cover ROWS records (polled every 0.2 s); fails with
# the end of LOG if the member PID has died meanwhile.
wait_drained() {
  local url=$1 rows=$2 pid=$3 log=$4
  while [ "$(psql -At "$url" -c 'SELECT coalesce(sum(next_offset), 0) FROM stream_offsets')" -lt "$rows" ]; do
    kill -0 "$pid" 2>/dev/null || { tail "$log"; exit 1; }
    sleep 0.2
  done
}

# copy_ceiling FROM_URL TO_URL: the database's ceiling for the rows stored
# at FROM_URL: its transactions, predictions and rejected rows dumped in
# PostgreSQL's binary format, then loaded by psql with `\copy … FROM`
# straight into the empty tables of TO_URL (a fresh database, migrated
# here: same indexes and constraints, no staging table, no conflict
# handling), in one transaction. Prints "MILLISECONDS TRANSACTIONS".
copy_ceiling() {
  local from=$1 to=$2 dir ms
  dir=$(mktemp -d "$work/ceiling.XXXXXX")
  chmod 755 "$dir"
  dump_rows "$from" "$dir"
  "$txflow" migrate --database-url "$to" >/dev/null 2>&1
  ms=$(load_rows "$to" "$dir")
  rm -rf "$dir"
  echo "$ms $(psql -At "$to" -c 'SELECT count(*) FROM transactions')"
}

# dump_rows URL DIR: the transactions, predictions and rejected rows stored
# at URL, as PostgreSQL binary COPY files in DIR.
dump_rows() {
  local table
  for table in transactions predictions rejected_records; do
    psql -q "$1" -c "\\copy $table TO '$2/$table.copy' (FORMAT binary)"
  done
}

# load_rows URL DIR: loads dump_rows' files into URL's tables by psql
# binary \copy in one transaction; prints the milliseconds it took.
load_rows() {
  local start end
  start=$(date +%s%N)
  psql -q -v ON_ERROR_STOP=1 "$1" >/dev/null <<SQL
BEGIN;
\copy transactions FROM '$2/transactions.copy' (FORMAT binary)
\copy predictions FROM '$2/predictions.copy' (FORMAT binary)
\copy rejected_records FROM '$2/rejected_records.copy' (FORMAT binary)
COMMIT;
SQL
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
