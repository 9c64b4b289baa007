#!/bin/sh
# Runs inside the QEMU 10.2 guest for scripts/qemu-vfio-guest-test: QEMU's own cxl-type3 behind pxb-cxl and
# cxl-rp, with intel-iommu. Does the IOMMU cover it (an IOMMU group), and can cxlkit reach it through VFIO?
export PATH=/extra:$PATH
sec() { echo "@@@ $1"; }
res() { echo "@@ RESULT $1 rc=$2"; }
BDF=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/class)" = 0x050210 ] && basename $d; done | head -1)
D=/sys/bus/pci/devices/$BDF
sec type3
echo "bdf $BDF"
lspci -t
echo "iommu_group $(readlink $D/iommu_group)"
ls /sys/kernel/iommu_groups/ | tr '\n' ' '; echo
dmesg | grep -iE 'DMAR|iommu' | head -8
sec type3-bind
echo 1 > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts
[ -e $D/driver ] && echo $BDF > $D/driver/unbind
echo vfio-pci > $D/driver_override && echo $BDF > /sys/bus/pci/drivers_probe
echo "driver $(readlink $D/driver | sed 's|.*/||')"
ls /dev/vfio
res type3-bind $?
sec type3-decode
cxlkit decode -vv vfio:$BDF; res type3-decode $?
