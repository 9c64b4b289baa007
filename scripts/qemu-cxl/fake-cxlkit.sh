#!/bin/sh
# fake-cxlkit.sh: a stand-in for cxlkit, in busybox sh, that implements the
# contract scripts/qemu-cxl/check.py assumes. It exists only to test the
# harness itself (scripts/qemu-cxl-test --self-test); it is NOT cxlkit.
#   list --json | decode BDF [-v..] (= lspci -vvv) | save BDF -o FILE (CXL.cache/mem
#   words as JSON) | diff FILE BDF (exit 0 same, 1 different) | restore BDF FILE
#   (rewrites HDM decoder 0 + global control with devmem, commits, waits for Committed) |
#   check BDF [--against FILE] (the kernel's endpoint decoder .0 region vs HDM decoder 0 Committed; exit 1
#   when the kernel holds a region through an uncommitted decoder, or a decoder committed in FILE is not) |
#   metrics BDF (cxl_hdm_decoder_committed and cxl_kernel_decoder_in_use of decoder 0)
. /extra/guest-lib.sh
sub=${1:-}; [ $# -gt 0 ] && shift
if [ "${1:-}" = --help ]; then echo "USAGE: cxlkit $sub (fake-cxlkit.sh stand-in)"; exit 0; fi
words() { cachemem $1 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
word() { echo "$1" | awk -v i=$2 '{print $(i + 1)}'; }
# hdm_off WORDS: offset of the HDM Decoder Capability in the CXL.cache/mem words.
hdm_off() {
    n=$(( (0x$(word "$1" 0) >> 24) & 255 )); i=1
    while [ $i -le $n ]; do e=$((0x$(word "$1" $i))); [ $((e & 0xffff)) -eq 5 ] && { echo $((e >> 20)); return 0; }; i=$((i + 1)); done
    return 1
}
# dec0 WORDS: "COMMITTED BASE SIZE" of HDM decoder 0.
dec0() {
    h=$(hdm_off "$1") || return 1
    wd() { echo $((0x$(word "$1" $(( ($h + $2) / 4 ))))); }
    echo "$(( ($(wd "$1" 0x20) >> 10) & 1 )) $(( ($(wd "$1" 0x14) << 32) | ($(wd "$1" 0x10) & 0xf0000000) )) $(( ($(wd "$1" 0x1c) << 32) | ($(wd "$1" 0x18) & 0xf0000000) ))"
}
# kdec: the kernel's endpoint decoder .0 holding a region: "NAME REGION START SIZE".
kdec() {
    for d in /sys/bus/cxl/devices/decoder*.0; do
        case $(readlink -f $d) in *endpoint*) ;; *) continue ;; esac
        r=$(cat $d/region 2>/dev/null); [ -n "$r" ] && echo "$(basename $d) $r $(cat $d/start) $(cat $d/size)" && return 0
    done
    return 1
}
case $sub in
--help|help|"") echo "USAGE: cxlkit <list|decode|save|diff|restore|check|metrics> (fake-cxlkit.sh stand-in)" ;;
list)
    printf '['; sep=
    for d in /sys/bus/pci/devices/*; do
        printf '%s{"address":"%s","class":"%s"}' "$sep" "$(basename $d)" "$(cat $d/class)"; sep=,
    done
    echo ']' ;;
decode) lspci -vvv -s "$1" ;;
save)
    [ "$2" = -o ] || { echo "usage: save BDF -o FILE" >&2; exit 2; }
    w=$(words $1) || exit 2
    printf '{"address":"%s","cachemem":"%s"}\n' "$1" "$w" > "$3" ;;
diff)
    saved=$(sed 's/.*"cachemem":"\([^"]*\)".*/\1/' "$1"); cur=$(words $2) || exit 2
    [ "$saved" = "$cur" ] && { echo "no differences"; exit 0; }
    echo "$saved" | tr ' ' '\n' > /tmp/.fk.a; echo "$cur" | tr ' ' '\n' > /tmp/.fk.b
    diff /tmp/.fk.a /tmp/.fk.b | grep '^[-+][0-9a-f]' | head -20
    echo "CXL.cache/mem registers differ"; exit 1 ;;
restore)
    saved=$(sed 's/.*"cachemem":"\([^"]*\)".*/\1/' "$2"); phys=$(cachemem_phys $1) || exit 2
    n=$(( (0x$(word "$saved" 0) >> 24) & 255 )); i=1; hdm=
    while [ $i -le $n ]; do
        e=$((0x$(word "$saved" $i))); [ $((e & 0xffff)) -eq 5 ] && hdm=$((e >> 20)); i=$((i + 1))
    done
    [ -n "$hdm" ] || { echo "no HDM decoder capability"; exit 2; }
    wd() { word "$saved" $(( ($hdm + $1) / 4 )); }
    for o in 0x10 0x14 0x18 0x1c 0x24 0x28; do devmem $((phys + hdm + o)) 32 0x$(wd $o); done
    devmem $((phys + hdm + 4)) 32 0x$(wd 4)
    ctrl=$((0x$(wd 0x20)))
    if [ $((ctrl & 0x400)) -ne 0 ]; then
        devmem $((phys + hdm + 0x20)) 32 $(( (ctrl & ~0xc00) | 0x200 ))
        i=0; while [ $(( $(devmem $((phys + hdm + 0x20)) 32) & 0x400 )) -eq 0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
        [ $i -lt 20 ] || { echo "decoder 0 did not commit"; exit 1; }
    else
        devmem $((phys + hdm + 0x20)) 32 $ctrl
    fi
    echo "restored HDM decoder 0 of $1" ;;
check)
    w=$(words $1) || exit 2; set -- "$@"; now=$(dec0 "$w") || exit 2; rc=0
    if k=$(kdec); then
        set -- $k "$@"; echo "note: kernel: mem0, $1 -> $2"
        if [ "${now%% *}" = 0 ]; then
            echo "PROBLEM: the kernel's $1 ($2) maps $3 ($(( $4 / 1048576 )) MiB) through HDM decoder 0, which is not committed"; rc=1
        fi
        shift 4
    fi
    if [ "${2:-}" = --against ]; then
        was=$(dec0 "$(sed 's/.*"cachemem":"\([^"]*\)".*/\1/' "$3")") || exit 2
        set -- $was
        if [ "$1" = 1 ] && [ "${now%% *}" = 0 ]; then
            printf 'PROBLEM: decoder 0 was committed at 0x%x (%d MiB), now not committed\n' "$2" $(( $3 / 1048576 )); rc=1
        fi
    fi
    [ $rc = 0 ] && echo "result: healthy"; exit $rc ;;
metrics)
    w=$(words $1) || exit 2; now=$(dec0 "$w") || exit 2
    echo "cxl_hdm_decoder_committed{device=\"$1\",decoder=\"0\"} ${now%% *}.0"
    if k=$(kdec); then set -- $k; echo "cxl_kernel_decoder_in_use{device=\"x\",decoder=\"0\",region=\"$2\"} 1.0"; fi ;;
*) echo "Error: Unexpected argument '$sub'" >&2; exit 64 ;;
esac
