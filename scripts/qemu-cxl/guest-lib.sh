# Shell functions shared by guest-test.sh and fake-cxlkit.sh (busybox sh, in the guest).
# rd32 FILE OFFSET: 32-bit little-endian word of FILE at OFFSET, as a decimal number
rd32() { v=$(od -An -tx4 -j $(($2)) -N4 "$1" | tr -d ' \n'); echo $((0x${v:-0})); }
# "BIR OFFSET" of the component register block (Register Locator DVSEC, block ID 1)
component_block() {
    cfg=/sys/bus/pci/devices/$1/config; off=256
    while [ $off -ne 0 ]; do
        h=$(rd32 $cfg $off); [ $h -eq 0 ] && break
        if [ $((h & 0xffff)) -eq $((0x23)) ]; then
            v1=$(rd32 $cfg $((off + 4))); v2=$(rd32 $cfg $((off + 8)))
            if [ $((v1 & 0xffff)) -eq $((0x1e98)) ] && [ $((v2 & 0xffff)) -eq 8 ]; then
                len=$((v1 >> 20)); i=0
                while [ $((12 + 8 * i + 8)) -le $len ]; do
                    lo=$(rd32 $cfg $((off + 12 + 8 * i))); hi=$(rd32 $cfg $((off + 16 + 8 * i)))
                    if [ $(((lo >> 8) & 255)) -eq 1 ]; then echo "$((lo & 7)) $(((hi << 32) | (lo & 0xffff0000)))"; return 0; fi
                    i=$((i + 1))
                done
            fi
        fi
        off=$(((h >> 20) & 0xffc))
    done
    return 1
}
# CXL.cache/mem registers (component block + 0x1000, 4 KiB) of BDF as od -tx4 words
cachemem() {
    set -- $1 $(component_block $1)
    [ $# -eq 3 ] || { echo "no component register block"; return 1; }
    mmio-dump /sys/bus/pci/devices/$1/resource$2 $(($3 + 4096)) 4096 | od -An -tx4 -v
}
# physical address of the CXL.cache/mem registers of BDF (component block + 0x1000)
cachemem_phys() {
    set -- $1 $(component_block $1)
    [ $# -eq 3 ] || return 1
    start=$(sed -n "$(($2 + 1))p" /sys/bus/pci/devices/$1/resource | cut -d' ' -f1)
    echo $((start + $3 + 4096))
}
