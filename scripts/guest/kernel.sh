#!/usr/bin/env bash
# Fetches Debian's kernel for the cgroup v2 test guest and builds its
# initramfs; caches both outside the source tree and prints two lines: the
# cache dir and the initramfs.
#
#   scripts/guest/kernel.sh
#
# The kernel is the package linux-image-amd64 depends on (for example
# linux-image-6.1.0-57-amd64), or $GUEST_KERNEL_PKG. It is fetched with
# `apt-get download` and unpacked with `dpkg -x`: it is never installed on the
# host, whose boot stays untouched.
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/guest-kernel-VERSION/
#   vmlinuz                  the kernel
#   vmlinux                  the same, uncompressed (booted through its PVH
#                            entry; absent, and no-vmlinux present, when
#                            vmlinuz is not xz-compressed)
#   config                   its build configuration
#   lib/modules/VERSION/     every module, with modules.dep and modules.alias
#                            (busybox depmod); the guest loads from here
#   initramfs-KEY.cpio.gz    busybox, the modules the 9p root needs, and
#                            scripts/guest/initramfs-init.sh as /init; KEY is
#                            a digest of those inputs, so editing the /init
#                            script makes a new one
# Concurrent callers are serialised with flock. The package is resolved with
# `apt-cache depends` again only when the apt lists change, so a second run
# takes milliseconds. Without apt lists (offline), the newest cached kernel is
# used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
busybox=/bin/busybox
# What the initramfs needs to mount the 9p root and the ext4 scratch disk
# (crc32c is requested by ext4 through the crypto API, not a symbol, so
# depmod does not list it).
initramfs_modules=(virtio_pci virtio_blk 9pnet_virtio 9p ext4 crc32c_generic)

die() { echo "guest kernel: $*" >&2; exit 1; }

[[ -x $busybox ]] || die "$busybox is missing (apt-get install busybox-static)"
mkdir -p "$cache"
exec 9>"$cache/.guest-kernel.lock"
flock 9

# The concrete package behind the linux-image-amd64 metapackage.
resolve_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

# apt-cache takes over a second where apt keeps no binary cache (Debian's
# container images), so the answer is remembered until the apt lists change.
resolved="$cache/.guest-kernel-package"
resolve_package_cached() {
    if [[ -s $resolved ]] &&
        [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$resolved" -print -quit 2>/dev/null)" ]]; then
        cat "$resolved"
        return 0
    fi
    local p
    p="$(resolve_package)"
    [[ -n $p ]] && echo "$p" >"$resolved"
    echo "$p"
}

# The uncompressed kernel from DIR/vmlinuz into DIR/vmlinux: it has a PVH
# entry, so qemu starts it directly in 32-bit mode, skipping the BIOS's
# real-mode boot and the decompressor (5 s under emulation, GUEST_ACCEL=tcg).
# Debian's 6.1 kernels are xz-compressed; for anything else DIR/no-vmlinux
# says so and the guest boots vmlinuz.
extract_vmlinux() {
    local dir="$1" offset
    offset="$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$dir/vmlinuz" | head -n 1 | cut -d: -f1)" || true
    if [[ -n $offset ]] && command -v xz >/dev/null; then
        # xz stops after its stream and tail then dies of SIGPIPE; only the
        # ELF magic below tells whether it worked.
        tail -c "+$((offset + 1))" "$dir/vmlinuz" | xz -dc --single-stream >"$dir/vmlinux.tmp" 2>/dev/null || true
    fi
    if [[ -s "$dir/vmlinux.tmp" && "$(head -c 4 "$dir/vmlinux.tmp")" == $'\x7fELF' ]]; then
        mv "$dir/vmlinux.tmp" "$dir/vmlinux"
    else
        rm -f "$dir/vmlinux.tmp"
        : >"$dir/no-vmlinux"
    fi
}

pkg="${GUEST_KERNEL_PKG:-}"
if [[ -z $pkg ]]; then
    pkg="$(resolve_package_cached)"
    if [[ -z $pkg ]]; then
        # Offline, or no apt lists yet: a cached kernel will do.
        newest="$(find "$cache" -maxdepth 1 -name 'guest-kernel-*' ! -name '*.tmp.*' -printf '%f\n' |
            sort -V | tail -n 1)"
        if [[ -n $newest && -f "$cache/$newest/vmlinuz" ]]; then
            pkg="linux-image-${newest#guest-kernel-}"
        else
            apt-get update -q >&2 || true
            pkg="$(resolve_package)"
        fi
    fi
fi
[[ $pkg =~ ^linux-image-([0-9][^ /]*)$ ]] || die "cannot find the kernel package behind linux-image-amd64 (got '$pkg')"
version="${BASH_REMATCH[1]}"
dest="$cache/guest-kernel-$version"

if [[ ! -f "$dest/vmlinuz" || ! -f "$dest/lib/modules/$version/modules.dep" ]]; then
    start=$SECONDS
    tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/deb"
    echo "guest kernel: fetching $pkg" >&2
    # Root cannot hand the download dir to apt's sandbox user; no matter.
    (cd "$tmp/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg") >&2
    deb="$(find "$tmp/deb" -name '*.deb' -print -quit)"
    [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
    dpkg -x "$deb" "$tmp/x"
    mkdir -p "$tmp/lib/modules"
    mv "$tmp/x/boot/vmlinuz-$version" "$tmp/vmlinuz"
    mv "$tmp/x/boot/config-$version" "$tmp/config"
    mv "$tmp/x/lib/modules/$version" "$tmp/lib/modules/"
    rm -rf "$tmp/x" "$tmp/deb"
    extract_vmlinux "$tmp"
    # Debian's postinst would run kmod's depmod; busybox's writes the same
    # modules.dep and modules.alias (kmod is not needed on the host).
    "$busybox" depmod -b "$tmp" "$version"
    echo "fetched $pkg ($(basename "$deb")) in $((SECONDS - start)) s on $(date -u +%FT%TZ)" >"$tmp/BUILD-INFO"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    trap - EXIT
    echo "guest kernel: $pkg unpacked in $((SECONDS - start)) s" >&2
fi

# (Caches made before vmlinux was extracted.)
[[ -f "$dest/vmlinux" || -f "$dest/no-vmlinux" ]] || extract_vmlinux "$dest"

moddir="$dest/lib/modules/$version"
init="$here/initramfs-init.sh"
key="$(cat "$init" "$busybox" <(printf '%s\n' "$version" "${initramfs_modules[@]}") | sha256sum | cut -c1-16)"
initramfs="$dest/initramfs-$key.cpio.gz"
if [[ ! -f $initramfs ]]; then
    # The modules and, transitively, what they depend on (modules.dep).
    declare -A seen=()
    files=()
    add_module() {
        local name="$1" line path dep
        line="$(grep -E "/${name//[-_]/[-_]}\\.ko(\\.[a-z]+)?:" "$moddir/modules.dep" | head -n 1)" ||
            die "module $name is not in $moddir/modules.dep (built in?)"
        path="${line%%:*}"
        [[ -n ${seen[$path]:-} ]] && return 0
        seen[$path]=1
        for dep in ${line#*:}; do
            dep="$(basename "$dep")"
            add_module "${dep%%.ko*}"
        done
        files+=("$path")
    }
    for m in "${initramfs_modules[@]}"; do
        if grep -qE "/${m//[-_]/[-_]}\\.ko" "$moddir/modules.builtin"; then
            continue
        fi
        add_module "$m"
    done
    root="$(mktemp -d "$dest/initramfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,newroot,lib/modules/"$version"}
    cp "$busybox" "$root/bin/busybox"
    mknod -m 600 "$root/dev/console" c 5 1
    cp "$init" "$root/init"
    chmod 755 "$root/init"
    for f in "${files[@]}"; do
        mkdir -p "$root/lib/modules/$version/$(dirname "$f")"
        cp "$moddir/$f" "$root/lib/modules/$version/$f"
    done
    cp "$moddir"/modules.{dep,alias,builtin,order} "$root/lib/modules/$version/"
    # Load order for /init: dependencies first.
    printf '%s\n' "${files[@]}" >"$root/lib/modules/load-order"
    (cd "$root" && find . -mindepth 1 | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) |
        gzip -6 >"$initramfs.tmp"
    mv "$initramfs.tmp" "$initramfs"
    rm -rf "$root"
    trap - EXIT
    # Older initramfs images of this kernel are stale (a day's grace for
    # guests booting from one right now).
    find "$dest" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "$(basename "$initramfs")" -mtime +0 -delete
    echo "guest kernel: built $(basename "$initramfs") (${#files[@]} modules)" >&2
fi
echo "$dest"
echo "$initramfs"
