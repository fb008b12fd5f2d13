#!/usr/bin/env bash
# Parallelic's two set-up commands, for a fresh Debian machine (as root) or a
# developer's one. Each installs what it needs when it is missing.
#   bash dev.sh start   the manager with an embedded NATS server and a local node
#   bash dev.sh test    every check and test (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"

DENO_VERSION=2.9.6
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_deno() {
  if ! command -v deno >/dev/null 2>&1 || ! deno --version | grep -q "deno $DENO_VERSION"; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    echo "Installing Deno $DENO_VERSION from the npm registry..." >&2
    npm install -g --silent "deno@$DENO_VERSION" >/dev/null
  fi
}
need_nats() {
  command -v nats-server >/dev/null 2>&1 || { echo "Installing nats-server..." >&2; apt_install nats-server; }
}
need_imagemagick() {
  # Another program may be called convert (GraphicsMagick's): ask for ImageMagick by name.
  convert -version 2>/dev/null | grep -q ImageMagick || { echo "Installing ImageMagick..." >&2; apt_install imagemagick; }
}
need_ip() {
  command -v ip >/dev/null 2>&1 || { echo "Installing iproute2..." >&2; apt_install iproute2; }
}
need_chromium() {
  command -v chromium >/dev/null 2>&1 || { echo "Installing Chromium..." >&2; apt_install chromium; }
}

case "${1:-}" in
  start)
    shift
    need_deno
    need_nats
    exec deno run -A main.ts manager "$@"
    ;;
  test)
    shift
    need_deno
    need_nats
    need_chromium
    need_imagemagick
    need_ip
    deno fmt --check
    deno lint
    deno check main.ts tools/*.ts bench/*.ts
    mkdir -p test-output
    set +e
    deno test -A "$@" 2>&1 | tee test-output/test.log
    status=${PIPESTATUS[0]}
    set -e
    summary=$(sed 's/\x1b\[[0-9;]*m//g' test-output/test.log | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
    passed=$(echo "$summary" | sed -E 's/.* ([0-9]+) passed.*/\1/')
    failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    echo "tests: ${passed:-0} passed, ${failed:-0} failed"
    exit "$status"
    ;;
  *)
    echo "usage: bash dev.sh start [manager flags] | bash dev.sh test [deno test args]" >&2
    exit 2
    ;;
esac
