#!/bin/sh
# Runs inside the QEMU 10.2 guest (busybox sh, as root, intel-iommu) for scripts/qemu-vfio-guest-test.
# The served device is bound to the guest kernel's vfio-pci; the guest's cxlkit then reaches it through VFIO
# (vfio:BDF), and serves it again over vfio-user (serve --device vfio:BDF) to a second cxlkit.
# Prints sections "@@@ NAME" with raw output and "@@ RESULT NAME rc=N" lines; the host judges them.
BDF=0000:01:00.0
D=/sys/bus/pci/devices/$BDF
T=vfio:$BDF
GS=/tmp/guest.sock
GC=/tmp/guest.ctl
GS4=/tmp/guest-v4.sock
GC4=/tmp/guest-v4.ctl
export PATH=/extra:$PATH

sec() { echo "@@@ $1"; }
res() { echo "@@ RESULT $1 rc=$2"; }

sec iommu
echo "group $(readlink $D/iommu_group | sed 's|.*/||')"
ls /sys/kernel/iommu_groups/$(readlink $D/iommu_group | sed 's|.*/||')/devices
dmesg | grep -iE 'DMAR|IOMMU' | head -5
# The iommufd cdev path needs /dev/iommu and /dev/vfio/devices (Linux >= 6.2 / 6.6 with CONFIG_IOMMUFD and
# CONFIG_VFIO_DEVICE_CDEV); modprobe in case it is a module.
modprobe iommufd 2>/dev/null
echo "kernel $(uname -r)"
if [ -e /dev/iommu ]; then echo "iommufd yes"; else echo "iommufd no"; fi
grep -c iommufd /proc/kallsyms 2>/dev/null | sed 's/^/iommufd-symbols /'

sec bind
# intel-iommu runs with intremap=off (TCG has no split irqchip), so the guest has no interrupt remapping and
# vfio_iommu_type1 refuses VFIO_SET_IOMMU (EPERM) unless told to accept unisolated MSIs.
echo 1 > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts
if [ -e $D/driver ]; then echo $BDF > $D/driver/unbind; fi
echo vfio-pci > $D/driver_override && echo $BDF > /sys/bus/pci/drivers_probe
echo "driver $(readlink $D/driver | sed 's|.*/||')"
ls -l /dev/vfio
res bind $?

sec decode
cxlkit decode -vvv $T; res decode $?

sec hdm-commit
cxlkit hdm commit $T --decoder 0 --base 0x4000000000 --size 256M; res hdm-commit $?

sec save
cxlkit save $T -o /tmp/before.json; res save $?

sec reset-flr
cxlkit reset $T --method flr; res reset-flr $?
sec diff-flr
cxlkit diff /tmp/before.json $T; res diff-flr $?

sec reset-sbr
cxlkit reset $T --method sbr; res reset-sbr $?
sec diff-sbr
cxlkit diff /tmp/before.json $T; res diff-sbr $?

sec restore
cxlkit restore $T /tmp/before.json; res restore $?
sec diff-restored
cxlkit diff /tmp/before.json $T; res diff-restored $?

sec reset-cxl
cxlkit reset $T --method cxl --preserve; res reset-cxl $?

# MSI-X end to end (the host server signals vector 0 every 200 ms): the host emulator -> QEMU's vfio-user-pci ->
# the guest's MSI-X -> the guest kernel's vfio-pci -> cxlkit's eventfd.
sec irq-vfio
cxlkit irq $T --count 3 --timeout-ms 20000; res irq-vfio $?

sec decode-before-serve
cxlkit decode -vvv $T; res decode-before-serve $?
sec serve-start
cxlkit serve --device $T --socket $GS --control $GC --verbose > /tmp/guest-serve.log 2>&1 &
SRV=$!
i=0; while [ ! -S $GS ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
ls -l $GS; res serve-start $?
sec serve-decode
cxlkit decode -vvv vfio-user:$GS; res serve-decode $?
sec serve-save
cxlkit save vfio-user:$GS -o /tmp/served.json; res serve-save $?
sec serve-reset
cxlkit reset vfio-user:$GS --method flr --preserve; res serve-reset $?
sec serve-conform
cxlkit conform vfio-user:$GS; res serve-conform $?
# The same through the guest server: the client's eventfd goes to the guest kernel (SET_IRQS forwarded).
sec irq-serve
cxlkit irq vfio-user:$GS --count 3 --timeout-ms 20000; res irq-serve $?
# The control socket of the guest server (read-only): its client's view and what it counted.
sec serve-control-decode
cxlkit decode -vvv control:$GC; res serve-control-decode $?
sec serve-control-metrics
cxlkit metrics control:$GC; res serve-control-metrics $?
sec serve-stop
kill -TERM $SRV; wait $SRV; res serve-stop $?
sec serve-log
cat /tmp/guest-serve.log

# v4 over the guest kernel's device: a CXL Reset (no --preserve) drops the decoder the guest committed, then decoder 0
# committed and locked (what v4 binds), served with --uapi v4 and checked with conform; the control socket counts
# the CXL Resets conform's device_reset ran.
sec v4-prepare
cxlkit reset $T --method cxl; echo "reset rc $?"
cxlkit hdm commit $T --decoder 0 --base 0x4000000000 --size 256M --lock --enable-hdm; res v4-prepare $?
sec v4-serve-start
cxlkit serve --device $T --uapi v4 --socket $GS4 --control $GC4 --verbose > /tmp/guest-serve-v4.log 2>&1 &
SRV4=$!
i=0; while [ ! -S $GS4 ] && [ $i -lt 200 ] && kill -0 $SRV4 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
ls -l $GS4; res v4-serve-start $?
sec v4-conform
cxlkit conform vfio-user:$GS4; res v4-conform $?
sec v4-control
cxlkit metrics control:$GC4; res v4-control $?
sec v4-stop
kill -TERM $SRV4; wait $SRV4; res v4-stop $?
sec v4-serve-log
cat /tmp/guest-serve-v4.log
