#!/usr/bin/env bash
# The main job on embedded defaults: start the API on :8910 (background), index docs/, run the
# health-check playbook. `scripts/demo.sh stop` stops the API.
set -euo pipefail
cd "$(dirname "$0")/.."

export AEGIS_DATA_DIR=${AEGIS_DATA_DIR:-$PWD/data}
export AEGIS_PORT=${AEGIS_PORT:-8910}
export AEGIS_HOST=${AEGIS_HOST:-127.0.0.1}
run_dir=var/demo
pid_file=$run_dir/aegis-api.pid
url="http://$AEGIS_HOST:$AEGIS_PORT"
log() { printf '[demo] %s\n' "$*"; }

stop() {
  if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    log "stopping the API (pid $(cat "$pid_file"))"
    kill "$(cat "$pid_file")"
    for _ in $(seq 50); do kill -0 "$(cat "$pid_file")" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pid_file"
}

if [[ "${1:-}" == "stop" ]]; then stop; exit 0; fi

mkdir -p "$run_dir"
stop
if curl -sf -o /dev/null --max-time 1 "$url/health"; then
  echo "Port $AEGIS_PORT already answers /health but was not started here; stop that service first." >&2
  exit 1
fi

log "starting the API on $url (log: $run_dir/aegis-api.log)"
nohup .venv/bin/aegis-rag serve > "$run_dir/aegis-api.log" 2>&1 &
echo $! > "$pid_file"
for i in $(seq 240); do
  curl -sf -o /dev/null --max-time 2 "$url/ready" && break
  kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -n 30 "$run_dir/aegis-api.log" >&2; exit 1; }
  sleep 0.5
  (( i == 240 )) && { echo "the API did not become ready in 120 s" >&2; tail -n 30 "$run_dir/aegis-api.log" >&2; exit 1; }
done

log "indexing docs/"
.venv/bin/aegis-rag ingest --url "$url" --quiet docs

log "health check"
.venv/bin/ansible-playbook -i inventories/local playbooks/health_check.yml

cat <<TXT

Aegis is running on $url (embedded Qdrant, local MiniLM embeddings, extractive answers).
  curl -s $url/chat -H 'Content-Type: application/json' \\
       -d '{"question":"How do I restore a collection from a backup?","history":[]}' | jq
Stop it with: make stop
TXT
