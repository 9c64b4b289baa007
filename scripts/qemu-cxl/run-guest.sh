#!/usr/bin/env bash
# run-guest.sh RUN_DIR CMDS_FILE [FILE[=GUEST_PATH] ...]
# Boots the guest from build-guest.sh (CACHE, default <repo>/.cache/qemu-cxl)
# in Debian bookworm's QEMU 7.2 with a CXL Type-3 topology:
#   q35,cxl=on -> pxb-cxl (bus 12, "cxl.1") -> cxl-rp (root_port13) -> cxl-type3
#   (persistent memdev 256 MiB + 256 MiB LSA), fixed memory window 4 GiB -> cxl.1
# The guest loads the CXL modules, runs CMDS_FILE with busybox sh (cwd /extra,
# FILEs copied to /extra/<basename> or GUEST_PATH) and powers off.
# RUN_DIR receives: qemu.cmdline, console.log (guest kernel console, ttyS0),
# output.txt (commands' output, ttyS1), guest.out (output between the markers),
# rc, vm-seconds. Exit status: the commands' status; 124 timeout; 125 harness error.
# Knobs: CACHE, QEMU [qemu-system-x86_64], TIMEOUT [300], MEM [2G], APPEND,
#        NO_CXL_MODULES=1 (boot without loading the CXL modules)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${CACHE:-$HERE/../../.cache/qemu-cxl}
QEMU=${QEMU:-qemu-system-x86_64}
TIMEOUT=${TIMEOUT:-300}
MEM=${MEM:-2G}
APPEND=${APPEND:-}
die() { echo "run-guest: $*" >&2; exit 125; }
[[ $# -ge 2 ]] || die "usage: run-guest.sh RUN_DIR CMDS_FILE [FILE[=GUEST_PATH] ...]"
RUN=$1; CMDS=$2; shift 2
command -v "$QEMU" >/dev/null || die "no $QEMU (apt-get install qemu-system-x86)"
"$HERE/build-guest.sh" "$CACHE" >/dev/null || die "guest build failed"
CACHE=$(cd "$CACHE" && pwd)
mkdir -p "$RUN"; RUN=$(cd "$RUN" && pwd)
rm -rf "$RUN/ov"; mkdir -p "$RUN/ov/extra" "$RUN/ov/etc"
cp "$CMDS" "$RUN/ov/cmds.sh"
[[ ${NO_CXL_MODULES:-0} == 1 ]] && : > "$RUN/ov/etc/no-cxl-modules"
for spec in "$@"; do
    src=${spec%%=*}
    if [[ $spec == *=* ]]; then dst=${spec#*=}; else dst=/extra/$(basename "$src"); fi
    [[ -f $src ]] || die "extra file $src not found"
    mkdir -p "$RUN/ov$(dirname "$dst")"; cp -L "$src" "$RUN/ov$dst"
    [[ -x $src ]] && chmod 755 "$RUN/ov$dst"
done
BB=$CACHE/host-busybox/bin/busybox
(cd "$RUN/ov" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) > "$RUN/ov.cpio.gz" || die "cpio"
cat "$CACHE/base.cpio.gz" "$RUN/ov.cpio.gz" > "$RUN/initrd.img"
# backing files for the Type-3 device (sparse, fresh each run)
rm -f "$RUN/cxl-mem1.raw" "$RUN/cxl-lsa1.raw"
truncate -s 256M "$RUN/cxl-mem1.raw" "$RUN/cxl-lsa1.raw"

# KVM on these hosts is PVM-backed and unusable (see /work/shared/reference/vfio-user.md §4): TCG
# unless kvm_intel/kvm_amd is loaded.
accel=(-accel tcg -cpu max)
if [[ -w /dev/kvm ]] && [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then accel=(-accel kvm -cpu host); fi
cmd=("$QEMU" -M q35,cxl=on "${accel[@]}" -smp 1 -m "$MEM,maxmem=8G,slots=8"
     -nodefaults -nographic -no-reboot -monitor none
     -serial "file:$RUN/console.log" -serial "file:$RUN/output.log"
     -kernel "$CACHE/vmlinuz" -initrd "$RUN/initrd.img"
     -append "console=ttyS0 panic=-1 rdinit=/init iomem=relaxed $APPEND"
     -object "memory-backend-file,id=cxl-mem1,share=on,mem-path=$RUN/cxl-mem1.raw,size=256M"
     -object "memory-backend-file,id=cxl-lsa1,share=on,mem-path=$RUN/cxl-lsa1.raw,size=256M"
     -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1
     -device cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2
     -device cxl-type3,bus=root_port13,memdev=cxl-mem1,lsa=cxl-lsa1,id=cxl-pmem0
     -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G)
printf '%q ' "${cmd[@]}" > "$RUN/qemu.cmdline"; echo >> "$RUN/qemu.cmdline"
: > "$RUN/console.log"; : > "$RUN/output.log"
t0=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${cmd[@]}" < /dev/null > "$RUN/qemu.out" 2>&1
qrc=$?
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", b-a}' > "$RUN/vm-seconds"
rm -f "$RUN/cxl-mem1.raw" "$RUN/cxl-lsa1.raw" "$RUN/initrd.img"
[[ -s $RUN/qemu.out ]] && sed 's/^/qemu: /' "$RUN/qemu.out" >&2
tr -d '\r' < "$RUN/output.log" > "$RUN/output.txt"
awk '/@@QC-BEGIN@@/ {on=1; next} on && /@@QC-END rc=[0-9]+@@/ {exit} on {print}' "$RUN/output.txt" > "$RUN/guest.out"
rc=$(grep -ao '@@QC-END rc=[0-9]*@@' "$RUN/output.txt" | tail -1 | tr -dc '0-9')
if [[ -z $rc ]]; then
    echo "run-guest: no status from the guest (qemu exit $qrc after $(cat "$RUN/vm-seconds")s); console tail:" >&2
    tail -n 30 "$RUN/console.log" | tr -d '\r' >&2
    echo none > "$RUN/rc"
    [[ $qrc -eq 124 || $qrc -eq 137 ]] && exit 124
    exit 125
fi
echo "$rc" > "$RUN/rc"
exit "$rc"
