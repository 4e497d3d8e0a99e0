#!/bin/bash
# Install krun from this release directory, as root, on Debian 12.
#
#   ./install.sh [--prefix DIR] [--engines] [--force-km]
#
#   DIR/lib/krun/venv    a venv holding krun (from wheels/, no network for Python)
#   DIR/bin/krun         the `krun` command
#   /opt/kontain/bin/km  the Kontain monitor from km/ (a KM that is not krun's is kept
#                        unless --force-km, which saves it for uninstall.sh)
#   /etc/krun/krun.toml  [kontain] km and km_sha256: krun runs only that KM
#   DIR/share/krun/      the example payloads and the schema
#   --engines            `krun install`: register krun with the engines found
# Debian packages krun needs and the system lacks are installed with apt.
#
# Every change is written to DIR/lib/krun/install-manifest as it is made;
# uninstall.sh (also copied to DIR/lib/krun/) undoes exactly those, in reverse. If this
# script fails half-way, it runs uninstall.sh itself: a failed install leaves nothing.
set -Eeuo pipefail  # -E: the ERR trap below fires inside functions too
umask 022

prefix=/usr/local
engines=0
force_km=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --engines) engines=1; shift ;;
        --force-km) force_km=1; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
prefix="$(realpath -m "$prefix")"
home="$prefix/lib/krun"
venv="$home/venv"
manifest="$home/install-manifest"
KM=/opt/kontain/bin/km
CONFIG=/etc/krun/krun.toml
APT_PACKAGES=(python3 python3-venv libyajl2 libseccomp2 libcap2 libsystemd0 iptables
              iproute2 procps util-linux)

# --- everything that can refuse, before anything changes ---------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (it installs to $prefix, $KM and $CONFIG)"
[ -f "$here/km/km" ] && [ -d "$here/wheels" ] || die "$here is not a krun release directory"
[ ! -e "$manifest" ] || die "krun is already installed in $prefix ($manifest): run $home/uninstall.sh first"
(cd "$here/km" && sha256sum --quiet -c km.sha256) || die "km/km does not match km/km.sha256"
km_sha="$(cut -d' ' -f1 "$here/km/km.sha256")"
if [ -e "$prefix/bin/krun" ] && ! grep -q "^# krun's entry point" "$prefix/bin/krun" 2>/dev/null; then
    die "$prefix/bin/krun exists and is not krun's launcher: move it away first"
fi
km_action=install
if [ -e "$KM" ] || [ -L "$KM" ]; then
    if cmp -s "$KM" "$here/km/km"; then
        km_action=same
    # krun's KM says "krun-km" in its --version; read, not run: never execute an unknown
    # binary as root.
    elif grep -qa 'krun-km' "$KM" || [ "$force_km" = 1 ]; then
        km_action=replace
    else
        km_action=keep
    fi
fi

# --- the changes, each recorded first, undone by uninstall.sh on failure -------------------
mkdir_recorded() {  # mkdir -p, recording each directory it creates (outermost first)
    local d="$1" missing=()
    while [ ! -e "$d" ]; do missing=("$d" "${missing[@]}"); d="$(dirname "$d")"; done
    for d in "${missing[@]}"; do
        mkdir -m 0755 "$d"
        [ -e "$manifest" ] && echo "dir $d" >> "$manifest" || pending_dirs+=("$d")
    done
}
pending_dirs=()
mkdir_recorded "$home"
: > "$manifest"
for d in "${pending_dirs[@]}"; do echo "dir $d" >> "$manifest"; done
record() { echo "$*" >> "$manifest"; }
install -m 0755 "$here/uninstall.sh" "$home/uninstall.sh"
record "file $home/uninstall.sh"

failed() {
    echo "install.sh: failed; undoing what it did" >&2
    "$home/uninstall.sh" --prefix "$prefix" --quiet || true
    exit 1
}
trap failed ERR

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    installed_before="$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1=="ii"{print $2}' | sort)"
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # Every package that is new, dependencies included: uninstall.sh purges those.
    new="$(comm -13 <(echo "$installed_before") \
        <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1=="ii"{print $2}' | sort) \
        | tr '\n' ' ')"
    record "apt $new"
fi

say "venv $venv"
record "venv $venv"
/usr/bin/python3 -m venv --copies "$venv"
"$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-index \
    --find-links "$here/wheels" krun
chmod -R go-w "$venv"

mkdir_recorded "$prefix/bin"
if [ -e "$prefix/bin/krun" ]; then
    mkdir -p "$home/saved"
    cp -a "$prefix/bin/krun" "$home/saved/krun"
    record "restore $prefix/bin/krun $home/saved/krun"
else
    record "file $prefix/bin/krun"
fi
"$venv/bin/python3" -I -m krun.installer launcher "$prefix/bin/krun"
say "krun $prefix/bin/krun"
record "protect $venv"
"$venv/bin/python3" -I -m krun.installer protect

mkdir_recorded "$prefix/share/krun/payloads"
for f in "$here"/payloads/*.km "$here"/schema/*.json; do
    dest="$prefix/share/krun/$( [ "${f##*.}" = km ] && echo payloads/)$(basename "$f")"
    record "file $dest"
    install -m 0644 "$f" "$dest"
done
chmod 0755 "$prefix"/share/krun/payloads/*.km

case "$km_action" in
    same) say "KM $KM is this release's already: left as it is" ;;
    keep) say "KM $KM is not krun's: kept (Kontain containers will use it; --force-km replaces it)" ;;
    install|replace)
        mkdir_recorded "$(dirname "$KM")"
        if [ "$km_action" = replace ]; then
            mkdir -p "$home/saved"
            cp -a "$KM" "$home/saved/km"
            record "restore $KM $home/saved/km"
            say "KM $KM replaced (the previous one is saved for uninstall.sh)"
        else
            record "file $KM"
            say "KM $KM"
        fi
        tmp="$(mktemp "$(dirname "$KM")/.km.XXXXXX")"
        install -m 0755 -o root -g root "$here/km/km" "$tmp"
        mv -f "$tmp" "$KM"
        ;;
esac

if [ "$km_action" != keep ]; then
    mkdir_recorded "$(dirname "$CONFIG")"
    saved=-
    if [ -e "$CONFIG" ]; then
        mkdir -p "$home/saved"
        cp -a "$CONFIG" "$home/saved/krun.toml"
        saved="$home/saved/krun.toml"
    fi
    record "config $CONFIG $saved -"
    "$venv/bin/python3" -I -m krun.installer pin "$CONFIG" "$KM" "$km_sha"
    # What was written: uninstall.sh puts the old file back only if no one edited it since.
    sed -i "\$s|.*|config $CONFIG $saved $(sha256sum "$CONFIG" | cut -d' ' -f1)|" "$manifest"
    say "pinned $KM (sha256 $km_sha) in $CONFIG"
fi

if [ "$engines" = 1 ]; then
    record "engines $prefix/bin/krun"
    "$prefix/bin/krun" install || say "krun install found nothing to register (see above)"
fi

trap - ERR
"$prefix/bin/krun" --version | head -1
say "done; $home/uninstall.sh --prefix $prefix removes it all"
