#!/bin/sh
# fake-cxlkit.sh: a stand-in for cxlkit, in busybox sh, that implements the
# contract scripts/qemu-cxl/check.py assumes. It exists only to test the
# harness itself (scripts/qemu-cxl-test --self-test); it is NOT cxlkit.
#   list --json | decode BDF [-v..] (= lspci -vvv) | save BDF -o FILE (CXL.cache/mem
#   words as JSON) | diff FILE BDF (exit 0 same, 1 different) | restore BDF FILE
#   (rewrites HDM decoder 0 + global control with devmem, commits, waits for Committed)
. /extra/guest-lib.sh
sub=${1:-}; [ $# -gt 0 ] && shift
if [ "${1:-}" = --help ]; then echo "USAGE: cxlkit $sub (fake-cxlkit.sh stand-in)"; exit 0; fi
words() { cachemem $1 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
word() { echo "$1" | awk -v i=$2 '{print $(i + 1)}'; }
case $sub in
--help|help|"") echo "USAGE: cxlkit <list|decode|save|diff|restore> (fake-cxlkit.sh stand-in)" ;;
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
*) echo "Error: Unexpected argument '$sub'" >&2; exit 64 ;;
esac
