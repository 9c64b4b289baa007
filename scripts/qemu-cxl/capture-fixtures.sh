#!/usr/bin/env bash
# capture-fixtures.sh OUT_DIR
# Boots the QEMU 7.2 CXL guest twice and stores captures under OUT_DIR:
#   pristine/  boot 1, no CXL driver loaded (firmware/QEMU reset state)
#   bound/     boot 2 after modprobe cxl_acpi cxl_pci cxl_mem cxl_pmem ...
#   region/    boot 2 after `cxl create-region -m -d decoder0.0 -w 1 -t pmem mem0`
#   reset/     boot 2 after `echo 1 > .../<endpoint>/reset` (with the region committed)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: capture-fixtures.sh OUT_DIR}
CACHE=${CACHE:-$HERE/../../.cache/qemu-cxl}; export CACHE
WORK=$CACHE/capture; rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
"$HERE/build-guest.sh" "$CACHE" >/dev/null
run() {  # run NAME NO_CXL_MODULES STATES...
    local name=$1 nomod=$2; shift 2
    printf 'sh /extra/capture-guest.sh %s\n' "$*" > "$WORK/$name.cmds"
    NO_CXL_MODULES=$nomod "$HERE/run-guest.sh" "$WORK/$name" "$WORK/$name.cmds" "$HERE/capture-guest.sh" || {
        echo "capture: guest run $name failed (rc $?)" >&2; sed -n '1,50p' "$WORK/$name/guest.out" >&2; exit 1; }
    awk '/@@CAP-BEGIN@@/{on=1;next} /@@CAP-END@@/{on=0} on' "$WORK/$name/guest.out" | base64 -d | tar xzf - -C "$WORK/$name"
    grep -v '^@@CAP\|^[A-Za-z0-9+/=]*$' "$WORK/$name/guest.out" | sed "s/^/[$name] /" >&2 || true
    cp -r "$WORK/$name/cap/." "$OUT/"
    cp "$WORK/$name/console.log" "$OUT/console-$name.log"
    cp "$WORK/$name/qemu.cmdline" "$OUT/qemu-cmdline.txt"
}
run boot1 1 pristine
run boot2 0 bound region reset
qemu-system-x86_64 --version | head -1 > "$OUT/qemu-version.txt"
cat "$CACHE/KERNEL" "$CACHE/KVER" > "$OUT/guest-kernel.txt"
