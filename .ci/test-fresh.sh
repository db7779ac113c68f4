#!/bin/bash
# make test-fresh: the README's commands on a Debian 12 machine that has
# nothing installed yet.
#
# 1. mmdebstrap bootstraps a minimal Debian 12 root (ca-certificates, git,
#    make) under a temporary directory, from Debian's archive with updates
#    and security (OCDZ_FRESH_MIRROR: mmdebstrap mirror arguments instead);
# 2. git clones the commit under test (HEAD, through a bundle: the
#    committed tree, not the work tree) into it;
# 3. t/fresh/inside.sh of that clone runs there, in a chroot with /proc
#    and /dev mounted, inside a mount and PID namespace of its own: make
#    demo, make deb, the t/fresh tests.
#
# The mounts live in the namespace only and go with it; every process of
# the root ends with the namespace's first process. The root is removed
# afterwards, on success and on failure (OCDZ_FRESH_KEEP=1 keeps it).
# As root, on Linux with mmdebstrap, unshare and chroot.

set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

t0=$(date +%s)
stage() { printf '\n=== test-fresh: %s (%d s)\n' "$*" $(( $(date +%s) - t0 )); }

if [ "$(id -u)" != 0 ]; then
    echo "test-fresh: run as root (mmdebstrap, chroot, mounts)" >&2
    exit 1
fi
for tool in mmdebstrap unshare chroot git; do
    command -v "$tool" >/dev/null || {
        echo "test-fresh: $tool is missing (make deps-test)" >&2
        exit 1
    }
done

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ocdz-fresh.XXXXXX")
chmod 0755 "$WORK"        # apt's _apt user downloads into it
ROOT=$WORK/root
CLONE=/root/ngx_http_ocdz_module

mounted() { grep -q " $ROOT/" /proc/self/mounts; }

cleanup() {
    local rc=$? p m
    trap - EXIT INT TERM HUP
    # nothing should be left: the namespace took its processes and mounts
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then
            echo "test-fresh: killing ${p#/proc/}, left in the root" >&2
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    if mounted; then
        for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' \
                   /proc/self/mounts | sort -r); do
            umount -l "$m" || true
        done
    fi
    if [ "${OCDZ_FRESH_KEEP:-0}" = 1 ]; then
        echo "test-fresh: root kept in $ROOT (OCDZ_FRESH_KEEP=1)"
    elif mounted; then
        echo "test-fresh: mounts left under $ROOT: not removed" >&2
        rc=1
    else
        rm -rf --one-file-system "$WORK"
    fi
    stage "done, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

commit=$(git rev-parse HEAD)
stage "commit under test: $(git log -1 --format='%h %s' HEAD | cut -c1-100)"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "(the work tree has uncommitted changes: they are not tested)"
fi

# shellcheck disable=SC2086
stage "mmdebstrap --variant=apt --include=ca-certificates,git,make bookworm"
mmdebstrap --variant=apt --include=ca-certificates,git,make bookworm \
    "$ROOT" ${OCDZ_FRESH_MIRROR:-}
# t/fresh refuses to run anywhere else
echo "made by make test-fresh, removed after it" >"$ROOT/etc/ocdz-fresh-root"
echo "the root: $(du -sh --one-file-system "$ROOT" | cut -f1)," \
     "$(chroot "$ROOT" dpkg-query -W | wc -l) packages"

stage "git clone of $commit into the root"
git bundle create -q "$ROOT/root/ocdz.bundle" HEAD
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin \
    git -c advice.detachedHead=false clone -q /root/ocdz.bundle "$CLONE"
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin \
    git -C "$CLONE" -c advice.detachedHead=false checkout -q --detach \
    "$commit"
rm "$ROOT/root/ocdz.bundle"
echo "$CLONE at $(chroot "$ROOT" git -C "$CLONE" rev-parse HEAD)"

stage "in the root: t/fresh/inside.sh (chroot, /proc and /dev mounted, own mount and PID namespace)"
unshare --mount --pid --fork --kill-child --propagation private -- \
    /bin/bash -c '
        set -e
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        exec chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
            TERM=dumb \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            /bin/bash "$2/t/fresh/inside.sh"
    ' test-fresh "$ROOT" "$CLONE"

stage "passed"
