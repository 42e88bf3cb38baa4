#!/usr/bin/env python3
"""The connectors benchmark (issue 13), driven by scripts/bench-connectors.

1. BENCH_FEEDS feeds (default 10,000) on a loopback nginx, each a feed connector (added by
   `feedmesh import opml`): the first round of polls (200s), then a second round where each
   feed answers its conditional GET with 304; the time of each round (target for the
   second: under 60 s on 2 cores) and the resident memory of `serve` (target under 150 MB).
2. BENCH_STATUSES Mastodon statuses (default 10,000, by bob, whom alice follows, seeded in
   mastodon-mock) behind the connector's cursor: the time and resident memory of `serve`
   pulling them all into alice's collection, each linked to bob's contact (by his profile
   URL), against a plain client fetching and parsing the same pages (40 a page, by min_id
   and Link rel="prev"), before and after it in the same run; the instance is the limit,
   so the ratio is what counts.
3. a status posted from the outbox collection: p50/p99 from the AtomPub POST (by a device)
   to the status existing on the instance (mastodon-mock from scripts/deps' venv), over
   BENCH_POSTS posts (default 200) made one after another.
"""
import importlib.util
import json
import statistics
import urllib.parse
import urllib.request
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
POSTS = int(os.environ.get("BENCH_POSTS", "200"))
STATUSES = int(os.environ.get("BENCH_STATUSES", "10000"))
PARTS = {int(x) for x in os.environ.get("BENCH_PARTS", "1,2,3").split(",") if x.strip()}
PEERS = os.environ.get("FEEDMESH_PEERS_DIR", os.path.expanduser("~/.cache/feedmesh-peers"))
MM_CONFIG = """url_scheme = "http"
[auth]
permissive = false
[[seed.accounts]]
username = "alice"
access_token = "alice-token"
"""


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


def start_serve(data):
    hub = subprocess.Popen([B, "serve", "--listen", "127.0.0.1:0", "--allow-private-network"], env=people.env_for(data),
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    people.procs.append(hub)
    for line in hub.stderr:
        m = re.search(r"serving on (\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
            return hub, m.group(1)
    sys.exit("serve did not start")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def start_mastodon(config):
    """mastodon-mock seeded with `config`: its process and base URL, or None without it."""
    python = os.path.join(PEERS, "venv-mm", "bin", "python")
    if not os.path.exists(python):
        return None
    cfg = os.path.join(W, f"mm-{len(people.procs)}.toml")
    open(cfg, "w").write(config)
    mm = subprocess.Popen([python, os.path.join(HERE, "..", "tests", "fixtures", "mastodon-mock.py"), cfg],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    people.procs.append(mm)
    instance = "http://127.0.0.1:" + mm.stdout.readline().split()[-1]
    for _ in range(1200):
        try:
            urllib.request.urlopen(instance + "/api/v1/instance", timeout=2)
            return mm, instance
        except Exception:
            time.sleep(0.1)
    sys.exit("mastodon-mock did not answer")


def plain_client(instance, token):
    """Seconds to fetch and parse the home timeline from its start, as the connector pages it."""
    t0 = time.time()
    url = f"{instance}/api/v1/timelines/home?limit=40&min_id=0"
    n = 0
    while url:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}))
        page = json.loads(resp.read())
        n += len(page)
        m = re.search(r'<([^>]+)>;\s*rel="prev"', resp.headers.get("Link", ""))
        url = m.group(1) if m and len(page) == 40 else None
    return time.time() - t0, n


def mastodon_backlog():
    """Part 2: a backlog of STATUSES statuses pulled into the hub, against a plain client."""
    config = MM_CONFIG + """[[seed.accounts]]
username = "bob"
access_token = "bob-token"
[[seed.follows]]
follower = "alice"
following = "bob"
""" + "".join(f'[[seed.statuses]]\naccount = "bob"\ntext = "status {i} of bob, with a few words to index"\n'
              for i in range(STATUSES))
    t0 = time.time()
    started = start_mastodon(config)
    if started is None:
        print("2. skipped: mastodon-mock is not installed (scripts/deps)")
        return
    _, instance = started
    print(f"   mastodon-mock seeded with {STATUSES} statuses in {time.time() - t0:.0f}s")
    plain1, n = plain_client(instance, "alice-token")
    if n < STATUSES:
        sys.exit(f"the plain client read {n} of {STATUSES} statuses")
    me = json.loads(urllib.request.urlopen(urllib.request.Request(
        instance + "/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer alice-token"})).read())
    bob = json.loads(urllib.request.urlopen(urllib.request.Request(
        instance + "/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer bob-token"})).read())
    data = os.path.join(W, "backlog-hub")
    people.cli(B, data, "user", "add", "bench")
    card = f"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bob\r\nURL:{bob['url']}\r\nEND:VCARD\r\n"
    people.cli(B, data, "contact", "import", "bench", "-", stdin=card)
    out, _ = people.cli(B, data, "connector", "add", "bench", "mastodon", "--option", f"instance={instance}",
                        "--option", "token=alice-token", "--allow-private-network")
    cid = int(out.split()[0])
    # Behind its cursor: the connector last saw the timeline before bob's first status.
    db = os.path.join(data, "feedmesh.db")
    state = json.dumps({"home": "0", "notifications": "0", "own": "0", "account_id": me["id"]})
    c = sqlite3.connect(db, timeout=30)
    c.execute("UPDATE connectors SET cursor = ?, account = ? WHERE id = ?",
              (json.dumps({"state": state}), f"alice@{instance[7:]}", cid))
    c.commit()
    c.close()
    t0 = time.time()
    hub, _ = start_serve(data)
    peak = 0
    while True:
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{hub.pid}/status").read()).group(1)) // 1024
        peak = max(peak, rss)
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        got = c.execute("SELECT COUNT(*) FROM items i JOIN collections k ON k.id = i.collection_id "
                        "WHERE k.name = 'mastodon'").fetchone()[0]
        c.close()
        if got >= STATUSES:
            break
        if time.time() - t0 > 900:
            sys.exit(f"only {got} of {STATUSES} statuses in 900 s")
        time.sleep(0.2)
    hub_s = time.time() - t0
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    linked = c.execute("SELECT COUNT(DISTINCT a.seq) FROM activity_people a JOIN contact_identities i "
                       "ON i.user_id = a.user_id AND i.identity = a.identity WHERE a.role = 'actor'").fetchone()[0]
    c.close()
    plain2, _ = plain_client(instance, "alice-token")
    plain = (plain1 + plain2) / 2
    print(f"   {linked} of {STATUSES} statuses linked to bob's contact by his profile URL")
    print(f"2. {STATUSES} Mastodon statuses pulled and linked: {hub_s:.1f}s, serve's peak RSS {peak} MB; "
          f"a plain client fetching and parsing the same pages: {plain1:.1f}s before, {plain2:.1f}s after; "
          f"ratio {hub_s / plain:.2f}x the plain client's time")


def outbox_latency():
    """Part 3: AtomPub POST into mastodon-outbox until the status is on the instance."""
    # BENCH_STREAMING=0: the instance with its streaming API off (the hub then only polls).
    streaming = "" if os.environ.get("BENCH_STREAMING", "1") == "1" else "[streaming]\nenabled = false\n"
    started = start_mastodon(MM_CONFIG.replace("[auth]", streaming + "[auth]"))
    if started is None:
        print("3. skipped: mastodon-mock is not installed (scripts/deps)")
        return
    _, instance = started
    data = os.path.join(W, "mastodon-hub")
    token = people.setup(B, "mastodon-hub")[1]
    hub, base = start_serve(data)
    out, _ = people.cli(B, data, "connector", "add", "bench", "mastodon", "--option", f"instance={instance}",
                        "--base-url", base, "--allow-private-network")
    auth = urllib.parse.urlparse(out.strip().splitlines()[-1])
    q = dict(urllib.parse.parse_qsl(auth.query))
    form = urllib.parse.urlencode({"username": "alice", "client_id": q["client_id"], "redirect_uri": q["redirect_uri"],
                                   "state": q["state"], "scope": q["scope"], "response_type": "code"}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(urllib.request.Request(instance + "/oauth/authorize", data=form))
        sys.exit("the instance did not redirect back")
    except urllib.error.HTTPError as e:
        back = e.headers["Location"]
    urllib.request.urlopen(back).read()
    client = people.Client(base, token)
    me = json.loads(urllib.request.urlopen(urllib.request.Request(
        instance + "/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer alice-token"})).read())
    own = f"{instance}/api/v1/accounts/{me['id']}/statuses?limit=5"

    def newest():
        req = urllib.request.Request(own, headers={"Authorization": "Bearer alice-token"})
        return [s["content"] for s in json.loads(urllib.request.urlopen(req).read())]

    # Wait for the connector's first run (it is active).
    for _ in range(200):
        if "\tactive\t" in people.cli(B, data, "connector", "list", "bench")[0]:
            break
        time.sleep(0.1)
    lat = []
    for i in range(POSTS):
        text = f"bench post {i} {time.time()}"
        body = f'<entry xmlns="http://www.w3.org/2005/Atom"><title>p{i}</title><content type="text">{text}</content></entry>'
        t0 = time.time()
        status, _, _ = client.request("POST", "/atompub/bench/mastodon-outbox", body, "application/atom+xml;type=entry")
        if status != 201:
            sys.exit(f"the outbox answered {status}")
        while not any(text in c for c in newest()):
            if time.time() - t0 > 120:
                sys.exit(f"post {i} never reached the instance")
            time.sleep(0.005)
        lat.append((time.time() - t0) * 1000)
    print(f"3. a status posted from the outbox ({POSTS} posts, one after another): p50 {statistics.median(lat):.0f} ms, "
          f"p99 {people.pct(lat, 0.99):.0f} ms (from the AtomPub POST to the status on the instance)")


def main():
    print(f"feedmesh connectors benchmark: {people.CORES} cores, {FEEDS} feeds")
    if 1 in PARTS:
        feeds()
    if 2 in PARTS:
        mastodon_backlog()
    if 3 in PARTS:
        outbox_latency()


def feeds():
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
    hub, _ = start_serve(data)
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
