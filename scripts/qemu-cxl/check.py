#!/usr/bin/env python3
"""check.py GUEST_OUT: judges the steps that scripts/qemu-cxl/guest-test.sh ran.

Prints one line per step (PASS / FAILED with the reason), then what the guest
kernel did (region, committed decoders, reset methods, HDM decoder hardware
state). Exit status 0 only if every judged step passed.

Contract assumed for cxlkit (document changes in the README):
  * `cxlkit SUB --help` exits 0 and names SUB (swift-argument-parser does);
    otherwise SUB counts as missing and its step FAILS.
  * `cxlkit list --json` prints valid JSON naming the endpoint and root port.
  * `cxlkit decode BDF -vvv` mentions every capability offset lspci -vvv shows.
  * `cxlkit save BDF -o FILE` writes valid JSON.
  * `cxlkit diff FILE BDF` exits like diff(1): 0 = same, 1 = differences, >1 = error.
  * `cxlkit restore BDF FILE` exits 0 and brings the HDM decoders back.
"""
import json, re, sys

def parse(path):
    steps, cur, buf = {}, None, []
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"@@STEP-BEGIN (\S+)@@$", line)
        if m:
            cur, buf = m.group(1), []
            continue
        m = re.match(r"@@STEP-END (\S+) rc=(\d+)@@$", line)
        if m and cur == m.group(1):
            body = buf[1:] if buf and buf[0].startswith("$ ") else buf
            if body and body[-1] == "":
                body = body[:-1]
            steps[cur] = (int(m.group(2)), "\n".join(body))
            cur = None
            continue
        if cur is not None:
            buf.append(line)
    return steps

def hdm(text):
    """Decode HDM decoders from the od -tx4 dump of the CXL.cache/mem area."""
    words = [int(w, 16) for w in text.split() if re.fullmatch(r"[0-9a-f]{8}", w)]
    if len(words) < 64:
        return None
    n = (words[0] >> 24) & 0xFF
    for i in range(1, min(n, 32) + 1):
        e = words[i]
        if e & 0xFFFF == 5:
            b = (e >> 20) // 4
            cap, gctl = words[b], words[b + 1]
            cnt = 1 if cap & 0xF == 0 else (cap & 0xF) * 2
            decs = []
            for k in range(cnt):
                o = b + 4 + 8 * k
                ctrl = words[o + 4]
                decs.append(dict(base=words[o + 1] << 32 | words[o], size=words[o + 3] << 32 | words[o + 2],
                                 ctrl=ctrl, commit=ctrl >> 9 & 1, committed=ctrl >> 10 & 1))
            return dict(cap=cap, global_ctrl=gctl, decoders=decs)
    return None

def fmt_hdm(h):
    if h is None:
        return "unreadable"
    d = " ".join(f"dec{i}[base={x['base']:#x} size={x['size']:#x} ctrl={x['ctrl']:#06x}"
                 f"{' COMMITTED' if x['committed'] else ''}]" for i, x in enumerate(h["decoders"]))
    return f"global_ctrl={h['global_ctrl']:#x} {d}"

def main():
    steps = parse(sys.argv[1])
    info = steps.get("info", (1, ""))[1]
    m = re.search(r"endpoint=(\S+) rootport=(\S+)", info)
    ep, rp = (m.group(1), m.group(2)) if m else ("?", "?")
    results = []

    def judge(name, ok, why=""):
        results.append((name, ok, why))

    def have(sub):
        rc, out = steps.get(f"help-{sub}", (127, ""))
        return rc == 0 and re.search(rf"\b{sub}\b", out) is not None and "usage" in out.lower()

    def cxlkit_step(name, sub, check, key=None):
        key = key or name
        if key not in steps:
            return judge(name, False, "step did not run")
        if not have(sub):
            return judge(name, False, f"cxlkit has no '{sub}' command (`cxlkit {sub} --help` does not describe it)")
        rc, out = steps[key]
        why = check(rc, out)
        judge(name, why is None, why or "")

    if "region" in steps:
        rc, out = steps["region"]
        h = hdm(steps.get("hdm-before", (1, ""))[1])
        committed = h and any(d["committed"] for d in h["decoders"])
        judge("region", rc == 0 and bool(committed),
              "" if rc == 0 and committed else f"cxl create-region rc={rc}, endpoint decoder committed={bool(committed)}")

    def chk_list(rc, out):
        if rc != 0:
            return f"exit {rc}"
        try:
            json.loads(out)
        except ValueError as e:
            return f"output is not JSON ({e})"
        short = lambda b: b.split(":", 1)[1] if b.count(":") == 2 else b
        missing = [b for b in (ep, rp) if b not in out and short(b) not in out]
        return f"JSON does not name {', '.join(missing)}" if missing else None
    cxlkit_step("list", "list", chk_list)

    def chk_decode(which):
        def f(rc, out):
            if rc != 0:
                return f"exit {rc}"
            if not out.strip():
                return "no output"
            offs = re.findall(r"Capabilities: \[([0-9a-f]+)", steps.get(which, (0, ""))[1])
            miss = [o for o in offs if not re.search(rf"(0x0*{o}\b|\[0*{o}\b|@0*{o}\b|\b0*{o}h\b)", out, re.I)]
            if miss:
                return f"capabilities lspci shows at {', '.join(miss)} not in the decode (have {len(offs) - len(miss)}/{len(offs)})"
            return None
        return f
    cxlkit_step("decode-ep", "decode", chk_decode("lspci-ep"))
    cxlkit_step("decode-rp", "decode", chk_decode("lspci-rp"))

    def chk_save(rc, out):
        if rc != 0:
            return f"exit {rc}"
        frc, fout = steps.get("save-file", (1, ""))
        if frc != 0:
            return "/tmp/s.json was not written"
        try:
            json.loads(fout)
        except ValueError as e:
            return f"/tmp/s.json is not JSON ({e})"
        return None
    cxlkit_step("save", "save", chk_save)

    # Fleet health (issue 18): cxlkit check against the guest kernel's CXL view, and cxlkit metrics, at each step.
    def committed_metric(out):
        m = re.search(r'^cxl_hdm_decoder_committed\{device="[^"]*",decoder="0"\} (\S+)$', out, re.M)
        return m.group(1) if m else None
    def kernel_metric(out):
        return re.search(r'^cxl_kernel_decoder_in_use\{device="[^"]*",decoder="0",region="region\d+"\} 1\.0$', out, re.M) is not None
    def chk_check_healthy(rc, out):
        if rc != 0:
            return f"exit {rc}, expected 0 (healthy)"
        if "kernel: mem" not in out or "-> region" not in out:
            return "the kernel's region was not found under /sys/bus/cxl/devices"
        return None
    def chk_metrics(want):
        def f(rc, out):
            if rc != 0:
                return f"exit {rc}"
            got = committed_metric(out)
            if got != want:
                return f"cxl_hdm_decoder_committed for decoder 0 is {got}, expected {want}"
            if not kernel_metric(out):
                return "no cxl_kernel_decoder_in_use 1 for decoder 0's region"
            return None
        return f
    cxlkit_step("check-after-region", "check", chk_check_healthy, key="check-region")
    cxlkit_step("metrics-after-region", "metrics", chk_metrics("1.0"), key="metrics-region")

    rrc, rout = steps.get("reset", (1, "step did not run"))
    judge("reset", rrc == 0, "" if rrc == 0 else f"sysfs reset failed: {rout.strip()[-200:]}")

    hb, ha, hr = (hdm(steps.get(k, (1, ""))[1]) for k in ("hdm-before", "hdm-after-reset", "hdm-after-restore"))
    changed = hb is not None and ha is not None and hb != ha

    def chk_diff1(rc, out):
        want = 1 if changed else 0
        if rc != want:
            return (f"exit {rc}, expected {want} "
                    + ("(the reset changed the HDM decoders)" if changed else "(the reset changed no HDM register)"))
        return None
    cxlkit_step("diff-after-reset", "diff", chk_diff1, key="diff1")

    def chk_check_reset(rc, out):
        if not changed:
            return None if rc == 0 else f"exit {rc}, expected 0 (the reset changed no HDM register)"
        if rc != 1:
            return f"exit {rc}, expected 1 (the kernel holds the region, the decoder was wiped)"
        if not re.search(r"the kernel's decoder\d+\.0 \(region\d+\) maps 0x[0-9a-f]+ \(\d+ MiB\) through HDM decoder 0, which is not committed", out):
            return "the kernel/hardware mismatch is not named"
        return None
    cxlkit_step("check-after-reset", "check", chk_check_reset, key="check-reset")
    def chk_check_against(rc, out):
        if not changed:
            return None if rc == 0 else f"exit {rc}, expected 0"
        if rc != 1 or not re.search(r"decoder 0 was committed at 0x[0-9a-f]+ \(\d+ MiB\), now not committed", out):
            return f"exit {rc}; expected 1 naming decoder 0"
        return None
    cxlkit_step("check-against-after-reset", "check", chk_check_against, key="check-reset-against")
    cxlkit_step("metrics-after-reset", "metrics", chk_metrics("0.0" if changed else "1.0"), key="metrics-reset")

    def chk_restore(rc, out):
        if rc != 0:
            return f"exit {rc}"
        if hb is not None and hr != hb:
            return f"HDM decoders not restored: before {fmt_hdm(hb)} / after restore {fmt_hdm(hr)}"
        return None
    cxlkit_step("restore", "restore", chk_restore)
    cxlkit_step("diff-after-restore", "diff", lambda rc, out: None if rc == 0 else f"exit {rc}, expected 0", key="diff2")
    cxlkit_step("check-after-restore", "check", chk_check_healthy, key="check-restore")
    cxlkit_step("metrics-after-restore", "metrics", chk_metrics("1.0"), key="metrics-restore")

    print("== steps")
    for name, ok, why in results:
        print(f"  {'PASS  ' if ok else 'FAILED'} {name}{'  -- ' + why if why else ''}")
    print("== what the guest kernel did")
    print("  " + steps.get("reset-methods", (0, "?"))[1].replace("\n", "\n  ").replace(": ", " reset_method: "))
    if "region" in steps:
        rc, out = steps["region"]
        try:
            r = json.loads(out[out.index("{"):out.rindex("}") + 1])
            r = f": {r['region']} at {r['resource']} size {r['size']}, decode_state {r.get('decode_state', '?')}"
        except (ValueError, KeyError):
            r = ""
        print(f"  cxl create-region rc={rc}{r}")
    for k, label in (("guest-decoders", "after create-region"), ("guest-decoders-end", "at the end")):
        if k in steps:
            try:
                j = json.loads(steps[k][1])
                decs = [f"{d['decoder']}=" + (f"{d['region']}@{d.get('resource', 0):#x}+{d.get('size', 0):#x}" if "region" in d
                        else d.get("state", "no-region")) for d in _walk_decoders(j)]
                print(f"  kernel decoders {label}: {' '.join(decs)}")
            except ValueError:
                print(f"  kernel decoders {label}: (cxl list output not JSON)")
    for k, h in (("before reset", hb), ("after reset", ha), ("after restore", hr)):
        print(f"  endpoint HDM hardware {k}: {fmt_hdm(h)}")
    print("  reset step: " + rout.strip().splitlines()[-1] if rout.strip() else "  reset step: no output")
    npass = sum(ok for _, ok, _ in results)
    print(f"qemu-cxl-test: {npass} passed, {len(results) - npass} failed")
    return 0 if npass == len(results) else 1

def _walk_decoders(j):
    if isinstance(j, dict):
        if "decoder" in j:
            yield j
        for v in j.values():
            yield from _walk_decoders(v)
    elif isinstance(j, list):
        for v in j:
            yield from _walk_decoders(v)

if __name__ == "__main__":
    sys.exit(main())
