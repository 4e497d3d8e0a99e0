# Shared locations for krun's scripts. Sourced, never executed.
# Build caches live outside the repository so a clean clone rebuilds nothing
# that has not changed and nothing built is ever committed.
KRUN_CACHE="${KRUN_CACHE:-/var/cache/krun}"
KRUN_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KRUN_VENV="${KRUN_VENV:-/usr/local/lib/krun/venv}"
KRUN_ROOTFS_DIR="$KRUN_CACHE/rootfs/busybox"
KRUN_ROOTFS_TAR="$KRUN_CACHE/rootfs/busybox.tar.gz"
export KRUN_CACHE KRUN_REPO KRUN_VENV KRUN_ROOTFS_DIR KRUN_ROOTFS_TAR
