#!/usr/bin/env bash
# Sets up the Molecule test hosts, idempotently: systemd containers run by rootful podman from a
# Debian 12 image built offline with debootstrap (Debian's archive only) and cached.
#   1. podman & co. from Debian
#   2. /etc/containers/containers.conf (runc, cgroupfs, file events, nofile/nproc limits)
#   3. the base image $AEGIS_TESTHOST_IMAGE: already in podman, else `podman load` from the cache,
#      else debootstrap + `podman import` + `podman save` into the cache; with $ZIP_BYTECODE in its Python
# A second run changes nothing. Each step prints its time. Needs root (uses sudo when not root).
# The image is rebuilt when its recipe (suite, packages, customize_rootfs, $ZIP_BYTECODE) changes.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${AEGIS_TESTHOST_IMAGE:-localhost/aegis-testhost:bookworm}
CACHE_DIR=${AEGIS_TESTHOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aegis/testhosts}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
HOST_PACKAGES=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs)
# python3-apt for Ansible's apt module and sudo for `become` (Debian servers have both); iproute2: `ss` for testinfra.
IMAGE_PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates
LABEL=org.aegis.testhost.recipe
# The test runs' bytecode cache for Ansible's module payloads, loaded by every Python on the hosts (bookworm: 3.11).
ZIP_BYTECODE=tests/bytecode/aegis_zip_bytecode.py
SITE_DIR=/usr/local/lib/python3.11/dist-packages

sudo=""; (( EUID == 0 )) || sudo="sudo"
log() { printf '[testhosts] %s\n' "$*"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

install_host_packages() {
  local t0 missing=() p
  t0=$(now)
  for p in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
    log "packages: installed ${missing[*]} ($(took "$t0"))"
  else
    log "packages: present ($(took "$t0"))"
  fi
}

# crun fails on these hosts' cgroups; root cannot raise nofile past 20000 here.
containers_conf() {
  cat <<'EOF'
# Written by aegis scripts/testhosts.sh: systemd test hosts under rootful podman.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
}

write_containers_conf() {
  local t0 conf=/etc/containers/containers.conf
  t0=$(now)
  if containers_conf | cmp -s - "$conf"; then
    log "containers.conf: up to date ($(took "$t0"))"
  else
    $sudo mkdir -p "$(dirname "$conf")"
    containers_conf | $sudo tee "$conf.tmp" >/dev/null
    $sudo mv "$conf.tmp" "$conf"
    log "containers.conf: written ($(took "$t0"))"
  fi
}

# Turns a debootstrap'd tree into a host that boots cleanly in a container.
customize_rootfs() {
  local root=$1
  : > "$root/etc/machine-id"  # empty: systemd makes one per container at boot
  local unit
  for unit in getty@.service console-getty.service serial-getty@.service getty.target \
    systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR}-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # No package lists in the image, dated 1970 so `apt: cache_valid_time` refreshes them.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  touch -d @0 "$root/var/lib/apt/lists"
}

recipe_hash() {
  { echo "$SUITE $MIRROR $IMAGE_PACKAGES $SITE_DIR"; declare -f customize_rootfs; cat "$ZIP_BYTECODE"; } |
    sha256sum | cut -c1-12
}

image_recipe() {
  podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

build_tmp=""
cleanup() { [[ -z "$build_tmp" ]] || $sudo rm -rf "$build_tmp"; }
trap cleanup EXIT

build_image() {
  local recipe=$1
  build_tmp=$($sudo mktemp -d /var/tmp/aegis-testhost.XXXXXX)
  trap cleanup EXIT  # also in the subshell this runs in
  # shellcheck disable=SC2016  # expanded by that sh, from its arguments
  if ! $sudo sh -c 'debootstrap --variant=minbase --include="$1" "$2" "$3/rootfs" "$4" > "$3/debootstrap.log" 2>&1' \
    _ "$IMAGE_PACKAGES" "$SUITE" "$build_tmp" "$MIRROR"; then
    $sudo tail -20 "$build_tmp/debootstrap.log" >&2
    echo "debootstrap of $SUITE from $MIRROR failed (last lines above)" >&2
    return 1
  fi
  $sudo bash -c "$(declare -f customize_rootfs); MIRROR=$MIRROR SUITE=$SUITE customize_rootfs '$build_tmp/rootfs'"
  $sudo install -D -m 0644 "$ZIP_BYTECODE" "$build_tmp/rootfs$SITE_DIR/aegis_zip_bytecode.py"
  echo "import aegis_zip_bytecode" | $sudo tee "$build_tmp/rootfs$SITE_DIR/aegis_zip_bytecode.pth" >/dev/null
  $sudo tar -C "$build_tmp/rootfs" -c . | podman import -q \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    --change "LABEL $LABEL=$recipe" - "$IMAGE" >/dev/null
  cleanup
  build_tmp=""
}

# Loads the image from the cache, or builds and caches it; prints what it did.
provide_image() {
  local recipe=$1 cached=$2 t0
  if [[ -f "$cached" ]]; then
    podman load -q -i "$cached" >/dev/null
    [[ "$(image_recipe)" == "$recipe" ]] && { echo "loaded from $cached"; return; }
    log "image cache $cached does not hold recipe $recipe: rebuilding" >&2
  fi
  build_image "$recipe"
  t0=$(now)
  mkdir -p "$CACHE_DIR"
  rm -f "$CACHE_DIR"/aegis-testhost-"$SUITE"-*.tar  # other recipes
  podman save -q -o "$cached.tmp" "$IMAGE"
  mv "$cached.tmp" "$cached"
  echo "built, saved to $cached in $(took "$t0")"
}

ensure_image() {
  local t0 recipe old_id done_what
  t0=$(now)
  recipe=$(recipe_hash)
  if [[ "$(image_recipe)" == "$recipe" ]]; then
    log "image $IMAGE: present ($(took "$t0"))"
    return
  fi
  old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  done_what=$(provide_image "$recipe" "$CACHE_DIR/aegis-testhost-$SUITE-$recipe.tar")
  # the image of an older recipe, now untagged (kept if a container still uses it)
  [[ -z "$old_id" ]] || podman rmi "$old_id" >/dev/null 2>&1 || true
  log "image $IMAGE: $done_what ($(took "$t0") in all)"
}

install_host_packages
write_containers_conf
ensure_image
