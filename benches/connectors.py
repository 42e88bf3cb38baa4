#!/usr/bin/env python3
"""The connectors benchmark (issue 13), driven by scripts/bench-connectors.

1. BENCH_FEEDS feeds (default 10,000) on a loopback nginx, each a feed connector (added by
   `feedmesh import opml`): the first round of polls (200s), then a second round where each
   feed answers its conditional GET with 304; the time of each round (target for the
   second: under 60 s on 2 cores) and the resident memory of `serve` (target under 150 MB).
"""
import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("people", os.path.join(HERE, "people.py"))
people = importlib.util.module_from_spec(spec)
spec.loader.exec_module(people)

B = people.B
W = people.W
FEEDS = int(os.environ.get("BENCH_FEEDS", "10000"))


def synced(db, since):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute("SELECT COUNT(*) FROM connectors WHERE last_sync_at >= ?", (since,)).fetchone()[0]
    finally:
        c.close()


def round_until_all(db, since, hub, limit=600):
    """Seconds until every connector synced at or after `since` (ms); the peak RSS (MB)."""
    t0 = time.time()
    peak = 0
    while True:
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{hub.pid}/status").read()).group(1)) // 1024
        peak = max(peak, rss)
        n = synced(db, since)
        if n >= FEEDS:
            return time.time() - t0, peak
        if time.time() - t0 > limit:
            sys.exit(f"only {n} of {FEEDS} feeds synced in {limit} s")
        time.sleep(0.25)


def main():
    print(f"feedmesh connectors benchmark: {people.CORES} cores, {FEEDS} feeds")
    root = os.path.join(W, "feeds")
    os.makedirs(os.path.join(root, "f"))
    for i in range(FEEDS):
        open(os.path.join(root, "f", f"{i}.atom"), "w").write(
            f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><id>urn:f{i}</id><title>feed {i}</title>'
            f'<updated>2026-01-01T00:00:00Z</updated><entry><id>urn:f{i}:1</id><title>entry of feed {i}</title>'
            f'<updated>2026-01-01T00:00:00Z</updated></entry></feed>')
    origin = people.nginx(root, workers=people.CORES)
    data = os.path.join(W, "hub")
    people.cli(B, data, "user", "add", "bench")
    opml = os.path.join(W, "feeds.opml")
    outlines = "".join(f'<outline type="rss" text="f{i}" xmlUrl="{origin}/f/{i}.atom"/>' for i in range(FEEDS))
    open(opml, "w").write(f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>')
    t0 = time.time()
    _, err = people.cli(B, data, "import", "opml", "bench", opml, "--allow-private-network")
    print(f"   import opml: {err.strip().splitlines()[-1]} in {time.time() - t0:.1f}s")
    env = people.env_for(data)
    hub = subprocess.Popen([B, "serve", "--listen", "127.0.0.1:0", "--allow-private-network"], env=env,
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    people.procs.append(hub)
    for line in hub.stderr:
        if "serving on" in line:
            threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
            break
    db = os.path.join(data, "feedmesh.db")
    first, peak1 = round_until_all(db, 0, hub)
    # Round two: every connector due now; each feed answers its ETag with 304.
    since = int(time.time() * 1000)
    c = sqlite3.connect(db, timeout=30)
    tagged = c.execute("SELECT COUNT(*) FROM connectors WHERE cursor LIKE '%etag%'").fetchone()[0]
    changes = c.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    c.execute("UPDATE connectors SET next_at = 0")
    c.commit()
    c.close()
    second, peak2 = round_until_all(db, since, hub)
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    after = c.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    c.close()
    print(f"   {tagged} of {FEEDS} cursors hold an ETag; changes written in round two: {after - changes}")
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{hub.pid}/status").read()).group(1)) // 1024
    print(f"   first round (200, {FEEDS} entries stored): {first:.1f}s, peak RSS {peak1} MB")
    print(f"1. {FEEDS} feeds polled with conditional GET (304): {second:.1f}s (target < 60); "
          f"serve's resident memory: peak {max(peak1, peak2)} MB, after {rss} MB (target < 150)")


if __name__ == "__main__":
    try:
        main()
    finally:
        people.cleanup()
