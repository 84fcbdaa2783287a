#!/usr/bin/env bash
# Copied from the team's shared/containers/setup-podman.sh so a fresh clone can run the
# containers suite on its own; keep the two in step.
# Real containers for testcontainers on a machine with no Docker engine and no
# container registry: podman serves the Docker API, images are built locally
# from Debian's packages. Verified on the project's machines (Debian 12, root).
#
# Usage:  source <(bash ../shared/containers/setup-podman.sh)   # prints exports
#   or:   bash ../shared/containers/setup-podman.sh > /tmp/podman.env && . /tmp/podman.env
#
# Facts this script works around (each one was seen failing):
#  - crun refuses this hybrid cgroup v1/v2 host  -> runtime = runc
#  - podman's default ulimits exceed the host's hard limits -> cap nofile/nproc
#  - no registry: every image must already exist locally; the Ryuk reaper image
#    cannot be pulled -> TESTCONTAINERS_RYUK_DISABLED=true, tests stop their own
#    containers in afterAll
#  - testcontainers >= 12.0.2 pulls undici 8, which crashes on Node 20:
#    pin testcontainers 12.0.1, or add "overrides": {"undici": "^7.25.0"}
#  - `tc qdisc ... netem` does not exist in this kernel: no added latency; use
#    pause/unpause, network disconnect, iptables DROP, or tc tbf for bandwidth
#  - a Node process without a SIGTERM handler makes every container stop wait 10 s
#
# Images built (all local, never pulled):
#   localhost/debian-min    Debian bookworm minbase (debootstrap)
#   localhost/debian-node   + this machine's node binary at /usr/local/bin/node
#   localhost/prometheus    + Debian's prometheus package
set -euo pipefail
BASE=${PODMAN_BASE:-/var/tmp/podman-ci}
mkdir -p "$BASE"/{conf,storage,run,tmp,networks,images}
export DEBIAN_FRONTEND=noninteractive

log() { echo "[setup-podman] $*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing podman, runc, debootstrap (~30 s)"
  apt-get update -qq >&2
  apt-get install -y -qq podman runc uidmap slirp4netns fuse-overlayfs debootstrap iptables >&2
fi

cat > "$BASE/conf/storage.conf" <<EOC
[storage]
driver = "overlay"
graphroot = "$BASE/storage"
runroot = "$BASE/run"
EOC
cat > "$BASE/conf/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$BASE/run/events.log"
tmp_dir = "$BASE/run/libpod"
image_copy_tmp_dir = "$BASE/tmp"
[network]
network_config_dir = "$BASE/networks"
EOC
export CONTAINERS_STORAGE_CONF=$BASE/conf/storage.conf CONTAINERS_CONF=$BASE/conf/containers.conf TMPDIR=$BASE/tmp

# The Debian mirror apt already uses on this machine.
MIRROR=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$MIRROR" ] || MIRROR=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')

if ! podman image exists localhost/debian-min; then
  log "building localhost/debian-min with debootstrap (~40 s)"
  debootstrap --variant=minbase bookworm "$BASE/images/rootfs" "$MIRROR" >&2
  rm -rf "$BASE"/images/rootfs/var/cache/apt/archives/*.deb "$BASE"/images/rootfs/var/lib/apt/lists/*
  tar -C "$BASE/images/rootfs" -c . | podman import -q - localhost/debian-min >&2
  rm -rf "$BASE/images/rootfs"
fi
if ! podman image exists localhost/debian-node; then
  mkdir -p "$BASE/images/node" && cp "$(command -v node)" "$BASE/images/node/node"
  printf 'FROM localhost/debian-min\nCOPY node /usr/local/bin/node\n' > "$BASE/images/node/Containerfile"
  podman build -q -t localhost/debian-node "$BASE/images/node" >&2
fi
if ! podman image exists localhost/prometheus; then
  log "building localhost/prometheus (~15 s)"
  mkdir -p "$BASE/images/prom"
  cat > "$BASE/images/prom/Containerfile" <<'EOC'
FROM localhost/debian-min
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
EOC
  podman build -q -t localhost/prometheus "$BASE/images/prom" >&2
fi

SOCK="$BASE/podman.sock"
if ! curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
  podman system service --time=0 "unix://$SOCK" > "$BASE/podman-service.log" 2>&1 &
  echo $! > "$BASE/podman-service.pid"
  for _ in $(seq 100); do curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
log "podman API ready; stop it later with: kill \$(cat $BASE/podman-service.pid)"
cat <<EOE
export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF CONTAINERS_CONF=$CONTAINERS_CONF
export DOCKER_HOST=unix://$SOCK TESTCONTAINERS_RYUK_DISABLED=true
EOE
