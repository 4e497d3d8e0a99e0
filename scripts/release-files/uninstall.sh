#!/bin/bash
# Undo install.sh: exactly what DIR/lib/krun/install-manifest records, newest first.
#
#   uninstall.sh [--prefix DIR] [--quiet]
#
# A file install.sh replaced (a KM, a krun launcher, /etc/krun/krun.toml) gets its old
# content back; krun.toml only if no one edited it since (else krun's keys leave it and
# the rest stays byte for byte). Debian packages install.sh added are purged, unless
# something installed since needs them (then they stay, and this says why).
set -euo pipefail

prefix=/usr/local
quiet=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --quiet) quiet=1; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { [ "$quiet" = 1 ] || echo "uninstall.sh: $*"; }
die() { echo "uninstall.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
prefix="$(realpath -m "$prefix")"
home="$prefix/lib/krun"
manifest="$home/install-manifest"
[ -f "$manifest" ] || die "$manifest: no such file or directory (krun is not installed in $prefix)"

mapfile -t lines < "$manifest"
dirs=()
for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r what a b c <<< "${lines[i]}"
    case "$what" in
        engines)
            "$a" uninstall >/dev/null 2>&1 || true
            say "engines: krun unregistered" ;;
        config)
            # a: the file, b: its saved copy or -, c: the sha256 install.sh wrote or -.
            if [ -e "$a" ] && [ "$c" != - ] && [ "$(sha256sum < "$a" | cut -d' ' -f1)" != "$c" ]; then
                "$home/venv/bin/python3" -I -m krun.installer unpin "$a"
                rm -f "$b"
                say "$a: edited since install; removed krun's keys, kept the rest"
            elif [ "$b" != - ]; then
                mv -f "$b" "$a"
                say "$a: restored"
            else
                rm -f "$a"
                say "$a: removed"
            fi ;;
        restore)
            mv -f "$b" "$a"
            say "$a: restored" ;;
        file)
            rm -f "$a"
            say "$a: removed" ;;
        protect)
            if [ -x "$a/bin/python3" ]; then
                "$a/bin/python3" -I -m krun.installer unprotect
            fi ;;
        venv)
            # Only the venv install.sh made, where it made it.
            if [ "$a" = "$home/venv" ] && [ -f "$a/pyvenv.cfg" ] && [ ! -L "$a" ]; then
                rm -rf "$a"
                say "$a: removed"
            fi ;;
        apt)
            read -r -a pkgs <<< "$a $b $c"
            [ ${#pkgs[@]} -gt 0 ] || continue
            # Purge only if that removes nothing but these: a package installed since
            # may depend on them.
            extra="$(apt-get -s purge "${pkgs[@]}" 2>/dev/null | awk '/^Purg /{print $2}' \
                     | grep -vxF -f <(printf '%s\n' "${pkgs[@]}") || true)"
            if [ -n "$extra" ]; then
                say "kept Debian packages ${pkgs[*]}: $(echo "$extra" | tr '\n' ' ')need them"
            else
                DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${pkgs[@]}" >/dev/null
                say "purged Debian packages ${pkgs[*]}"
            fi ;;
        dir) dirs+=("$a") ;;

        *) say "ignored manifest line: ${lines[i]}" ;;
    esac
done
rm -f "$manifest"
rmdir "$home/saved" 2>/dev/null || true
# Directories last (newest first), only when empty: what someone else put there stays.
for d in "${dirs[@]}"; do
    rmdir "$d" 2>/dev/null || say "$d: not empty, kept"
done
say "done"
