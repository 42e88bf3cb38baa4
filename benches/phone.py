#!/usr/bin/env python3
"""The phone benchmark (issue 14, part 3), driven by scripts/bench-phone.

A BENCH_RECORDS-record "SMS Backup & Restore" file (default 100,000: four texts to a call,
500 numbers in three notations, a few MMS), imported by `feedmesh phone import` into a
fresh hub with 500 contacts: records per second and the command's peak resident memory
(target under 100 MB), then the same file again (every record already there).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

B = os.environ["FEEDMESH_BIN"]
RECORDS = int(os.environ.get("BENCH_RECORDS", "100000"))
W = tempfile.mkdtemp(prefix="feedmesh-phone-bench.")


def number(i, style):
    n = f"415555{i % 500:04d}"
    return [f"+1{n}", f"({n[:3]}) {n[3:6]}-{n[6:]}", n][style % 3]


def backup(path):
    t0 = 1_700_000_000_000
    with open(path, "w") as f:
        f.write("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n")
        f.write(f'<smses count="{RECORDS}">\n')
        for i in range(RECORDS):
            if i % 100 == 99:
                f.write(f'  <mms date="{t0 + i * 1000}" msg_box="1" m_id="m{i}" contact_name="P {i % 500}">'
                        f'<parts><part seq="0" ct="text/plain" text="photo {i}"/><part seq="1" ct="image/jpeg" '
                        f'data="{"A" * 4000}"/></parts><addrs><addr address="{number(i, i)}" type="137"/>'
                        f'<addr address="+14155559999" type="151"/></addrs></mms>\n')
            else:
                kind = 1 + i % 2
                f.write(f'  <sms protocol="0" address="{number(i, i // 7)}" date="{t0 + i * 1000}" type="{kind}" '
                        f'subject="null" body="message {i} about the order &amp; the invoice &#128512;" toa="null" '
                        f'read="1" status="-1" locked="0" contact_name="P {i % 500}" />\n')
        f.write("</smses>\n")


def run(args, data):
    env = dict(os.environ, FEEDMESH_DATA_DIR=data, FEEDMESH_LOG="warn")
    env.pop("FEEDMESH_DATABASE_URL", None)
    t0 = time.time()
    out = subprocess.run(["/usr/bin/time", "-v", B, *args], env=env, capture_output=True, text=True)
    took = time.time() - t0
    if out.returncode != 0:
        sys.exit(f"feedmesh {' '.join(args)}: {out.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) // 1024
    summary = [l for l in out.stderr.splitlines() if "records added" in l]
    return took, rss, summary[-1].strip() if summary else ""


def main():
    try:
        data = os.path.join(W, "hub")
        path = os.path.join(W, "sms-bench.xml")
        backup(path)
        mb = os.path.getsize(path) / 1e6
        run(["user", "add", "bench"], data)
        cards = "".join(f"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:P {i}\r\nTEL:+1415555{i:04d}\r\nEND:VCARD\r\n" for i in range(500))
        open(os.path.join(W, "c.vcf"), "w").write(cards)
        run(["contact", "import", "bench", os.path.join(W, "c.vcf")], data)
        print(f"feedmesh phone benchmark: {os.cpu_count()} cores, {RECORDS} records, {mb:.1f} MB file")
        took, rss, line = run(["phone", "import", "bench", path], data)
        print(f"3. {RECORDS} records imported: {took:.1f}s, {RECORDS / took:,.0f} records/s, "
              f"peak RSS {rss} MB (target < 100) [{line}]")
        took, rss, line = run(["phone", "import", "bench", path], data)
        print(f"   the same file again: {took:.1f}s, {RECORDS / took:,.0f} records/s, peak RSS {rss} MB [{line}]")
    finally:
        shutil.rmtree(W, ignore_errors=True)


if __name__ == "__main__":
    main()
