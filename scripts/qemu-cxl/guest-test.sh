#!/bin/sh
# Runs INSIDE the guest (busybox sh) for scripts/qemu-cxl-test. Every step's
# output goes between "@@STEP-BEGIN name@@" and "@@STEP-END name rc=N@@";
# the host (scripts/qemu-cxl/check.py) judges the steps. This script only runs
# them, in order, and never stops early.
export PATH=/extra:/bin:/sbin:/usr/bin:/usr/sbin
EP=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/class)" = 0x050210 ] && basename $d; done | head -1)
RP=$(basename "$(dirname "$(readlink -f /sys/bus/pci/devices/$EP)")")

run() {  # run NAME CMD...
    n=$1; shift
    echo "@@STEP-BEGIN $n@@"
    echo "\$ $*"
    "$@" 2>&1
    rc=$?
    echo
    echo "@@STEP-END $n rc=$rc@@"
}

. /extra/guest-lib.sh

run info sh -c "echo endpoint=$EP rootport=$RP; uname -r; cat /proc/cmdline; ls /sys/bus/cxl/devices"
run reset-methods sh -c "for d in $EP $RP; do f=/sys/bus/pci/devices/\$d/reset_method; if [ -e \$f ]; then echo \"\$d: \$(cat \$f)\"; else echo \"\$d: (none)\"; fi; done"
if command -v cxl >/dev/null; then
    run region cxl create-region -m -d decoder0.0 -w 1 -t pmem mem0
    run guest-decoders cxl list -D -vvv
fi
run lspci-ep lspci -vvv -s $EP
run lspci-rp lspci -vvv -s $RP
run cxlkit-help cxlkit --help
for sub in list decode save diff restore check metrics; do run help-$sub cxlkit $sub --help; done
run list cxlkit list --json
run decode-ep cxlkit decode $EP -vvv
run decode-rp cxlkit decode $RP -vvv
run hdm-before cachemem $EP
run save cxlkit save $EP -o /tmp/s.json
run save-file cat /tmp/s.json
run check-region cxlkit check $EP
run metrics-region cxlkit metrics $EP
if [ -e /sys/bus/pci/devices/$EP/reset ]; then R=$EP; else R=$RP; fi
run reset sh -c "echo 1 > /sys/bus/pci/devices/$R/reset && echo reset of $R via \$(cat /sys/bus/pci/devices/$R/reset_method) done"
run hdm-after-reset cachemem $EP
run diff1 cxlkit diff /tmp/s.json $EP
run check-reset cxlkit check $EP
run check-reset-against cxlkit check $EP --against /tmp/s.json
run metrics-reset cxlkit metrics $EP
run restore cxlkit restore $EP /tmp/s.json
run hdm-after-restore cachemem $EP
run diff2 cxlkit diff /tmp/s.json $EP
run check-restore cxlkit check $EP
run metrics-restore cxlkit metrics $EP
command -v cxl >/dev/null && run guest-decoders-end cxl list -D -vvv
run dmesg-cxl sh -c "dmesg | grep -i -E 'cxl|pmem|region|reset' | tail -40"
exit 0
