#!/bin/sh
# Runs INSIDE the guest (busybox sh). Captures CXL config space and register
# blocks into /tmp/cap/<state>/, then streams /tmp/cap as base64(tar.gz)
# between @@CAP-BEGIN@@ / @@CAP-END@@ on stdout.
# Usage (as /cmds.sh): sh capture-guest.sh pristine            (modules not loaded)
#                      sh capture-guest.sh bound region reset  (modules loaded)
EP=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/class)" = 0x050210 ] && basename $d; done | head -1)
[ -n "$EP" ] || { echo "no CXL memory device (class 0x050210)"; exit 1; }
RP=$(basename "$(dirname "$(readlink -f /sys/bus/pci/devices/$EP)")")
echo "endpoint $EP root port $RP"
mkdir -p /tmp/cap; echo "endpoint $EP rootport $RP" > /tmp/cap/devices.txt

rd32() { v=$(od -An -tx4 -j $(($2)) -N4 "$1" | tr -d ' \n'); echo $((0x${v:-0})); }

# prints "BIR BLOCKID OFFSET" for every Register Locator DVSEC entry
reglocator() {
    cfg=$1; off=256
    while [ $off -ne 0 ]; do
        h=$(rd32 $cfg $off)
        [ $h -eq 0 ] && break
        if [ $((h & 0xffff)) -eq $((0x23)) ]; then
            v1=$(rd32 $cfg $((off + 4))); v2=$(rd32 $cfg $((off + 8)))
            if [ $((v1 & 0xffff)) -eq $((0x1e98)) ] && [ $((v2 & 0xffff)) -eq 8 ]; then
                len=$((v1 >> 20)); i=0
                while [ $((12 + 8 * i + 8)) -le $len ]; do
                    lo=$(rd32 $cfg $((off + 12 + 8 * i))); hi=$(rd32 $cfg $((off + 16 + 8 * i)))
                    echo "$((lo & 7)) $(((lo >> 8) & 255)) $(((hi << 32) | (lo & 0xffff0000)))"
                    i=$((i + 1))
                done
            fi
        fi
        off=$(((h >> 20) & 0xffc))
    done
}

blkname() { case $1 in 1) echo component;; 2) echo bar-virt-acl;; 3) echo memdev;; 4) echo cpmu;; *) echo id$1;; esac; }

capdev() {  # capdev BDF DIR
    s=/sys/bus/pci/devices/$1; d=$2; mkdir -p $d
    cp $s/config $d/config.bin
    lspci -xxxx -s $1 > $d/lspci-xxxx.txt 2>&1
    lspci -vvv -s $1 > $d/lspci-vvv.txt 2>&1
    lspci -nnvvvk -s $1 > $d/lspci-nnvvvk.txt 2>&1
    cat $s/resource > $d/resource.txt
    if [ -e $s/reset_method ]; then cat $s/reset_method > $d/reset_method.txt; else echo "(no reset_method file)" > $d/reset_method.txt; fi
    [ -e $s/driver ] && basename "$(readlink $s/driver)" > $d/driver.txt
    reglocator $s/config | grep -v ' 0 ' > $d/register-locator.txt
    # every memory BAR up to 1 MiB that no register block points into, whole
    n=0
    while read start end flags; do
        if [ $((start)) -ne 0 ] && [ $((flags & 0x200)) -ne 0 ] && [ -e $s/resource$n ] && ! grep -q "^$n " $d/register-locator.txt; then
            size=$((end - start + 1))
            if [ $size -le 1048576 ]; then mmio-dump $s/resource$n 0 $size > $d/bar$n.bin || echo "bar$n dump failed" >> $d/errors.txt; fi
        fi
        n=$((n + 1))
    done < $s/resource
    # register blocks named by the Register Locator DVSEC (64 KiB each, or up to the BAR end)
    while read bir bid boff; do
        set -- $(sed -n "$((bir + 1))p" $s/resource); size=$(($2 - $1 + 1)); len=$((size - boff))
        [ $len -gt 65536 ] && len=65536
        f=$d/block-$(blkname $bid)-bar$bir-$(printf 0x%x $boff).bin
        mmio-dump $s/resource$bir $boff $len > $f || echo "block $bid dump failed" >> $d/errors.txt
    done < $d/register-locator.txt
}

caphb() {  # host bridge component registers from the CEDT CHBS entries
    d=$1; mkdir -p $d
    t=/sys/firmware/acpi/tables/CEDT
    [ -r $t ] || { echo "no CEDT" > $d/errors.txt; return; }
    cp $t $d/CEDT.bin
    tl=$(rd32 $t 4); off=36
    : > $d/chbs.txt
    while [ $off -lt $tl ]; do
        typ=$(( $(rd32 $t $off) & 255 )); len=$(( ($(rd32 $t $off) >> 16) & 0xffff ))
        [ $len -eq 0 ] && break
        if [ $typ -eq 0 ]; then
            uid=$(rd32 $t $((off + 4))); ver=$(rd32 $t $((off + 8)))
            base=$(( $(rd32 $t $((off + 16))) | ($(rd32 $t $((off + 20))) << 32) ))
            blen=$(( $(rd32 $t $((off + 24))) | ($(rd32 $t $((off + 28))) << 32) ))
            echo "uid=$uid cxl_version=$ver base=$(printf 0x%x $base) length=$(printf 0x%x $blen)" >> $d/chbs.txt
            [ $blen -gt 65536 ] && blen=65536
            mmio-dump /dev/mem $base $blen > $d/chbs-uid$uid-component.bin || echo "chbs dump failed" >> $d/errors.txt
        fi
        off=$((off + len))
    done
}

capsys() {  # capsys DIR: system-wide context
    d=$1; mkdir -p $d
    lspci -nn > $d/lspci-nn.txt 2>&1
    lspci -tv > $d/lspci-tv.txt 2>&1
    grep -v -i 'system ram\|kernel \|reserved' /proc/iomem > $d/iomem.txt
    if [ -d /sys/bus/cxl ]; then
        cxl list -vvv -R -D -P -E -M -T > $d/cxl-list.json 2>&1
        for x in /sys/bus/cxl/devices/decoder*; do
            echo "== $(basename $x)"
            for a in start size commit target_list interleave_ways interleave_granularity mode dpa_resource dpa_size region target_type cap_pmem cap_ram locked; do
                [ -r $x/$a ] && echo "$a: $(cat $x/$a 2>&1)"
            done
        done > $d/decoders-sysfs.txt
        ls -l /sys/bus/cxl/devices/ > $d/cxl-devices.txt
    fi
}

capture() {  # capture STATE
    echo "== capturing $1"
    capdev $EP /tmp/cap/$1/endpoint
    capdev $RP /tmp/cap/$1/rootport
    caphb /tmp/cap/$1/hostbridge
    capsys /tmp/cap/$1
    dmesg > /tmp/cap/$1/dmesg.txt
}

for state in "$@"; do
    case $state in
    pristine|bound) capture $state ;;
    region)
        cxl create-region -m -d decoder0.0 -w 1 -t pmem mem0 > /tmp/create-region.out 2>&1; rc=$?
        echo "cxl create-region rc=$rc"; cat /tmp/create-region.out
        mkdir -p /tmp/cap/region; { echo "# cxl create-region -m -d decoder0.0 -w 1 -t pmem mem0  (rc=$rc)"; cat /tmp/create-region.out; } > /tmp/cap/region/create-region.txt
        capture region ;;
    reset)
        if echo 1 > /sys/bus/pci/devices/$EP/reset; then r="reset ok"; else r="reset failed"; fi
        echo "echo 1 > /sys/bus/pci/devices/$EP/reset (method $(cat /sys/bus/pci/devices/$EP/reset_method)): $r"
        mkdir -p /tmp/cap/reset; echo "$r via $(cat /sys/bus/pci/devices/$EP/reset_method)" > /tmp/cap/reset/reset.txt
        capture reset ;;
    esac
done
echo "@@CAP-BEGIN@@"
tar cf - -C /tmp cap | gzip -9 | base64
echo "@@CAP-END@@"
