#!/usr/bin/env bash
# build-guest.sh CACHE_DIR
# Builds (once) the minimal guest for scripts/qemu-cxl-test in CACHE_DIR:
#   vmlinuz         Debian bookworm linux-image-6.1.*-amd64 (apt-get download + dpkg -x)
#   base.cpio.gz    busybox-static, lspci/setpci (+libs, pci.ids), ndctl's `cxl`
#                   (+libs), mmio-dump (static), the CXL/NVDIMM/DAX modules with
#                   their dependencies and depmod indexes, and /init
# Idempotent: does nothing when CACHE_DIR/CACHE_VERSION matches. Prints the
# kernel version on stdout. Needs root (apt-get) the first time.
# Ideas taken from /work/shared/tools/qemu-vfio-user/run-guest.sh.
set -euo pipefail
CACHE=${1:?usage: build-guest.sh CACHE_DIR}
mkdir -p "$CACHE"; CACHE=$(cd "$CACHE" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_VERSION=4
MODULES="cxl_acpi cxl_pci cxl_mem cxl_pmem nd_pmem nd_btt dax_pmem device_dax kmem"
die() { echo "build-guest: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"; flock 8
if [[ -s $CACHE/vmlinuz && -s $CACHE/base.cpio.gz && $(cat "$CACHE/CACHE_VERSION" 2>/dev/null) == "$CACHE_VERSION" ]]; then
    cat "$CACHE/KVER"; exit 0
fi

need=()
for c in lspci:pciutils cxl:ndctl gcc:gcc cpio:cpio; do
    command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
[[ -f /usr/share/misc/pci.ids ]] || need+=(pci.ids)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || need+=(libc6-dev)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; } ||
        die "apt-get install ${need[*]} failed"
fi

pkgs=$CACHE/pkgs; mkdir -p "$pkgs"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1[.0-9-]*-amd64$/ {print $2; exit}')
[[ -n $kpkg ]] || { apt-get update >&2; kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1[.0-9-]*-amd64$/ {print $2; exit}'); }
[[ -n $kpkg ]] || die "cannot resolve linux-image-amd64"
for p in "$kpkg" busybox-static kmod; do
    ls "$pkgs/${p}"_*.deb >/dev/null 2>&1 ||
        (cd "$pkgs" && apt-get -q -o APT::Sandbox::User=root download "$p" >&2) || die "apt-get download $p"
done
log "kernel package $kpkg"
rm -rf "$CACHE/kroot" "$CACHE/host-busybox" "$CACHE/host-kmod" "$CACHE/root"
dpkg -x "$(ls "$pkgs/$kpkg"_*.deb | head -1)" "$CACHE/kroot"
kver=$(ls "$CACHE/kroot/lib/modules" | head -1)
cp -f "$CACHE/kroot/boot/vmlinuz-$kver" "$CACHE/vmlinuz.new"
dpkg -x "$(ls "$pkgs"/busybox-static_*.deb | head -1)" "$CACHE/host-busybox"
dpkg -x "$(ls "$pkgs"/kmod_*.deb | head -1)" "$CACHE/host-kmod"
ln -sf kmod "$CACHE/host-kmod/bin/depmod"
BB=$CACHE/host-busybox/bin/busybox
mdir=$CACHE/kroot/lib/modules/$kver
"$CACHE/host-kmod/bin/depmod" -b "$CACHE/kroot" "$kver" || die "depmod (kernel tree)"

root=$CACHE/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/share/misc,etc,proc,sys,dev,tmp,run,root,extra,lib64,lib/x86_64-linux-gnu,lib/modules/$kver}
cp "$BB" "$root/bin/busybox"
for a in $("$BB" --list); do [[ $a == busybox ]] || ln -sf busybox "$root/bin/$a"; done
for b in /usr/bin/lspci /usr/bin/setpci /usr/bin/cxl; do
    cp -L "$b" "$root/usr/bin/"
    for lib in $(ldd "$b" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/[^ ]+ \(/ {print $1}'); do
        mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
done
cp -L /usr/share/misc/pci.ids "$root/usr/share/misc/pci.ids"
gcc -O2 -static -o "$root/usr/bin/mmio-dump" "$HERE/mmio-dump.c" || die "gcc mmio-dump"

# modules: the list above plus what modules.dep says they need
cp "$mdir"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
for m in $MODULES; do
    line=$(awk -F: -v n="$m" '{ f=$1; sub(/.*\//,"",f); sub(/\.ko$/,"",f); gsub(/-/,"_",f); if (f==n) {print; exit} }' "$mdir/modules.dep")
    [[ -n $line ]] || die "module $m not in $kver"
    for f in ${line/:/ }; do mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"; cp "$mdir/$f" "$root/lib/modules/$kver/$f"; done
done
"$CACHE/host-kmod/bin/depmod" -b "$root" "$kver" || die depmod
echo "$MODULES" > "$root/etc/cxl-modules"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

cat > "$root/init" <<'INIT'
#!/bin/sh
# qemu-cxl init: load CXL modules, run /cmds.sh, output on ttyS1 between markers, power off
export PATH=/extra:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc; mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
hostname guest
OUT=/dev/ttyS1; [ -c $OUT ] || OUT=/dev/console
stty -F $OUT raw -echo 2>/dev/null
{
    echo "@@QC-BEGIN@@"
    if [ ! -e /etc/no-cxl-modules ]; then
        for m in $(cat /etc/cxl-modules); do modprobe "$m" || echo "init: modprobe $m failed"; done
        # let cxl_acpi/cxl_pci/cxl_mem finish probing (async port/endpoint enumeration)
        i=0; while [ $i -lt 50 ] && [ -z "$(ls /sys/bus/cxl/devices 2>/dev/null | grep endpoint)" ]; do sleep 0.1; i=$((i+1)); done
        sleep 0.5
    fi
    cd /extra
    sh /cmds.sh < /dev/null 2>&1
    rc=$?
    printf '\n@@QC-END rc=%d@@\n' "$rc"
} > $OUT 2>&1
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
INIT
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -6) > "$CACHE/base.cpio.gz.new"
mv -f "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
mv -f "$CACHE/base.cpio.gz.new" "$CACHE/base.cpio.gz"
rm -rf "$CACHE/kroot/boot" "$CACHE/kroot/usr"
echo "$kpkg" > "$CACHE/KERNEL"; echo "$kver" > "$CACHE/KVER"; echo "$CACHE_VERSION" > "$CACHE/CACHE_VERSION"
log "guest ready: $kpkg ($kver), initramfs $(du -h "$CACHE/base.cpio.gz" | cut -f1)"
echo "$kver"
