#!/bin/sh
# Runs inside the QEMU 10.2 guest (busybox sh, as root) for scripts/qemu-vfio-user-test.
# usage: guest-checks.sh PROFILE BOOT          (BOOT: first | reboot)
# Prints sections "@@@ NAME" with raw output and "@@ RESULT NAME rc=N" lines; the host judges them.
P=$1
BOOT=$2
BDF=0000:01:00.0
D=/sys/bus/pci/devices/$BDF
export PATH=/extra:$PATH

sec() { echo "@@@ $1"; }
res() { echo "@@ RESULT $1 rc=$2"; }

BASE=0x4000000000
SIZE=256M

if [ "$BOOT" = reboot ]; then
    sec decode-reboot
    cxlkit decode -vv $BDF; res decode-reboot $?
    exit 0
fi

sec topology
lspci -t; lspci -nn -s 00:01.0
sec lspci
lspci -vvv -s 01:00.0; res lspci $?
sec config-size
wc -c < $D/config
sec decode-initial
cxlkit decode -vvv $BDF; res decode-initial $?

sec hdm-commit
cxlkit hdm commit $BDF --decoder 0 --base $BASE --size $SIZE; res hdm-commit $?
sec decode-committed
cxlkit decode -vv $BDF; res decode-committed $?

sec save
cxlkit save $BDF -o /tmp/before.json; res save $?
sec reset-method
cat $D/reset_method
# FLR first (a config write: CXL state must survive), then SBR (DEVICE_RESET: the guest's conventional reset).
sec flr
echo flr > $D/reset_method && echo 1 > $D/reset; res flr $?
sec diff-flr
cxlkit diff /tmp/before.json $BDF; res diff-flr $?
sec sbr
echo bus > $D/reset_method && echo 1 > $D/reset; res sbr $?
sec diff-sbr
cxlkit diff /tmp/before.json $BDF; res diff-sbr $?
sec decode-after-sbr
cxlkit decode -vv $BDF; res decode-after-sbr $?
echo "flr bus" > $D/reset_method 2>/dev/null
# Commit again, so the server is left holding a committed decoder for the host to check after power-off.
sec hdm-recommit
cxlkit hdm commit $BDF --decoder 0 --base $BASE --size $SIZE; res hdm-recommit $?
sec decode-final
cxlkit decode -vv $BDF; res decode-final $?

sec msix
# The Debian 6.1 guest kernel has no CONFIG_VFIO_NOIOMMU: a tiny driver (kmod/cxlkit_msix_test.c) enables
# MSI-X and requests a handler per vector; the server's timer makes the device signal vector 0.
if [ -f /extra/cxlkit_msix_test.ko ]; then
    insmod /extra/cxlkit_msix_test.ko
    echo "1e98 $(sed 's/^0x//' $D/device)" > /sys/bus/pci/drivers/cxlkit_msix_test/new_id
    echo "driver: $(basename "$(readlink $D/driver)")"
    sleep 3
    grep -E "CPU0|cxlkit-msix" /proc/interrupts
    N=$(awk '/cxlkit-msix-0$/ {print $2}' /proc/interrupts)
    echo "vector 0 count: ${N:-none}"
    [ -n "$N" ] && [ "$N" -gt 0 ]; res msix $?
    echo $BDF > /sys/bus/pci/drivers/cxlkit_msix_test/unbind
else
    echo "no /extra/cxlkit_msix_test.ko"; res msix 2
fi
exit 0
