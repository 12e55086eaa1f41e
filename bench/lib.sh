# Shell helpers shared by the benchmark runners that start servers (run-broker-bench,
# run-group-bench). Source it after setting `prog` (the runner's name, for messages). The
# server being measured is the global `server_pid`.

server_pid=''

die() { echo "$prog: $*" >&2; exit 1; }

# bench_data_dir <build dir> <name>: sets data_root ($ORDO_BENCH_DIR, default
# <build dir>/bench-data, created if missing, refused on tmpfs), fs_type, created_data_root
# (1 when this run created it) and data_dir (<data_root>/<name>-<pid>, created).
bench_data_dir() {
  data_root=${ORDO_BENCH_DIR:-$1/bench-data}
  created_data_root=0
  if [[ ! -d $data_root ]]; then
    mkdir -p "$data_root"
    created_data_root=1
  fi
  data_root=$(cd "$data_root" && pwd)
  fs_type=$(findmnt -n -o FSTYPE -T "$data_root" 2>/dev/null || stat -f -c %T "$data_root")
  case "$fs_type" in
    tmpfs|ramfs) die "$data_root is on $fs_type: set ORDO_BENCH_DIR to a directory on a disk" ;;
  esac
  data_dir="$data_root/$2-$$"
  mkdir -p "$data_dir"
}

# Removes data_dir, and data_root when this run created it.
remove_bench_data() {
  rm -rf "$data_dir"
  if [[ $created_data_root == 1 ]]; then
    rmdir "$data_root" 2>/dev/null || true
  fi
}

stop_server() {  # SIGTERM, wait up to 60 s, then SIGKILL; prints nothing
  local pid=$server_pid
  server_pid=''
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) the server process has used so far.
server_cpu() {
  [[ -n $server_pid ]] || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$server_pid/stat"
}

wait_for_log() {  # wait_for_log <file> <regex>: prints the first match's first group
  local i
  for i in $(seq 300); do
    if [[ $(cat "$1") =~ $2 ]]; then
      echo "${BASH_REMATCH[1]}"
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

wait_for_port() {  # wait_for_port <port>
  local i
  for i in $(seq 300); do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
      "$1" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_ordo <ordo binary> <data dir> <log file> <serve arguments...>: starts `ordo serve` on
# 127.0.0.1:0 in the background (server_pid) and sets `port` to the port it bound.
start_ordo() {
  local ordo=$1 dir=$2 log=$3
  shift 3
  mkdir -p "$dir"
  "$ordo" serve --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  server_pid=$!
  port=$(wait_for_log "$log" 'listening on 127\.0\.0\.1:([0-9]+)') ||
    die "ordo did not start: $(tail -5 "$log")"
}

# run <name> <command...>: one measurement. The command prints one JSON object (its last line
# of output); it goes to $results/<name>.json with the server's CPU seconds during the run
# (server_cpu_s), the 1-minute load average when it ended (load1) and, with count_syscalls=1,
# the server's fdatasync and pwrite64 calls during the run (server_fdatasync, server_pwrite64;
# perf stat). The runner's `report_line <json file>` prints the figures after the name
# (name_width columns). A failure is reported and counted in `failures`, and the run goes on.
failures=0
count_syscalls=0
name_width=36
run() {
  local name=$1 status=0 cpu0 cpu1 perf_pid=''
  shift
  printf "  %-${name_width}s" "$name"
  rm -f "$results/$name.syscalls"
  if [[ $count_syscalls == 1 && -n $server_pid ]]; then
    perf stat -x, -o "$results/$name.syscalls" -p "$server_pid" \
      -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64 >/dev/null 2>&1 &
    perf_pid=$!
  fi
  cpu0=$(server_cpu)
  "$@" >"$results/$name.out" 2>"$results/$name.err" || status=$?
  cpu1=$(server_cpu)
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  if [[ $status != 0 ]] || ! python3 - "$results/$name.out" "$results/$name.json" "$cpu0" "$cpu1" \
      "$(cut -d' ' -f1 /proc/loadavg)" "$results/$name.syscalls" <<'PY'
import json, os, sys
src, dst, cpu0, cpu1, load, syscalls = sys.argv[1:]
with open(src) as f:
    doc = json.loads(f.read().strip().splitlines()[-1])
doc["server_cpu_s"] = float(cpu1) - float(cpu0)
doc["load1"] = float(load)
if os.path.exists(syscalls):
    # perf stat -x, lines: count,unit,event,...; the whole command, set-up included.
    with open(syscalls) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
                doc["server_" + parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
with open(dst, "w") as f:
    json.dump(doc, f, indent=1)
PY
  then
    echo " FAILED (status $status; see $name.err)"
    tail -3 "$results/$name.err" | sed 's/^/      /'
    failures=$((failures + 1))
    return 0
  fi
  report_line "$results/$name.json"
  rm -f "$results/$name.out"
  [[ -s $results/$name.err ]] || rm -f "$results/$name.err"
}
