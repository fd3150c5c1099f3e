#!/usr/bin/env bash
# A real OCI registry on loopback for `just publish` and its tests: Debian's docker-registry
# (the CNCF distribution registry, 2.8), on 127.0.0.1:5050 only, storing under
# /var/tmp/sendbox-registry. Installs it when missing (as root), starts it when it is not
# answering, and waits until it answers. Idempotent; `stop` stops it, `--fresh` starts it
# empty.
set -euo pipefail
addr=127.0.0.1:5050
dir=/var/tmp/sendbox-registry

stop() {
    if [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null; then
        while kill -0 "$(cat "$dir/pid")" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$dir/pid"
}
case "${1:-}" in
    stop) stop; exit 0 ;;
    --fresh) stop; rm -rf "$dir/storage" ;;
    "") ;;
    *) echo "usage: $0 [stop|--fresh]" >&2; exit 2 ;;
esac

answers() { curl -fs -o /dev/null --max-time 2 "http://$addr/v2/"; }
answers && { echo "registry: http://$addr (already running)"; exit 0; }

if ! command -v docker-registry >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "the test registry needs docker-registry: sudo apt install docker-registry" >&2; exit 1; }
    apt-get install -y -qq docker-registry >/dev/null
fi
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null

mkdir -p "$dir/storage"
cat > "$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr
CONFIG
# The package's own service would listen on every interface; this one is loopback only.
setsid docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 < /dev/null &
echo $! > "$dir/pid"
for _ in $(seq 50); do
    answers && { echo "registry: http://$addr (pid $(cat "$dir/pid"), log $dir/log)"; exit 0; }
    sleep 0.2
done
echo "the registry did not answer on $addr; its log:" >&2
cat "$dir/log" >&2
exit 1
