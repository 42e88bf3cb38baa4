#!/usr/bin/env python3
"""The CardDAV benchmark (issue 14, part 4), driven by scripts/bench-carddav.

Radicale in a scratch directory holds an address book of BENCH_CONTACTS cards (default
5,000: a name, two e-mail addresses, a phone number each). The hub's carddav connector takes
it into a fresh hub's Contacts (each card folded by identity, indexed for timelines):
the time of the first sync; then one card is edited at the server and the time of the sync
that brings it (sync-collection from the token: one card read).
"""
import importlib.util
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("people", os.path.join(HERE, "people.py"))
people = importlib.util.module_from_spec(spec)
spec.loader.exec_module(people)

B = people.B
W = people.W
N = int(os.environ.get("BENCH_CONTACTS", "5000"))
PW = "bench-secret"


def card(i, extra=""):
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-{i}\r\nFN:Person {i}\r\nN:{i};Person;;;\r\n"
            f"EMAIL;TYPE=WORK:p{i}@example.org\r\nEMAIL;TYPE=HOME:p{i}@home.example\r\n"
            f"TEL;TYPE=CELL:+1415{i:07d}\r\n{extra}END:VCARD\r\n")


def radicale():
    d = os.path.join(W, "dav")
    os.makedirs(d)
    open(os.path.join(d, "users"), "w").write(f"alice:{PW}\n")
    open(os.path.join(d, "config"), "w").write(
        f"[server]\nhosts = 127.0.0.1:0\n[auth]\ntype = htpasswd\nhtpasswd_filename = {d}/users\n"
        f"htpasswd_encryption = plain\ndelay = 0\n[rights]\ntype = owner_only\n[storage]\n"
        f"filesystem_folder = {d}/collections\n[web]\ntype = none\n")
    # The book as Radicale stores it: one file per card and the collection's properties.
    book = os.path.join(d, "collections", "collection-root", "alice", "contacts")
    os.makedirs(book)
    open(os.path.join(book, ".Radicale.props"), "w").write(
        '{"D:displayname": "Contacts", "tag": "VADDRESSBOOK"}')
    for i in range(N):
        open(os.path.join(book, f"card-{i}.vcf"), "w").write(card(i))
    p = subprocess.Popen(["radicale", "-C", os.path.join(d, "config"), "--logging-level", "info"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    people.procs.append(p)
    for line in p.stderr:
        if "Listening on '" in line:
            addr = line.split("Listening on '")[1].split("'")[0].replace("[", "").replace("]", "")
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return f"http://{addr}"
    sys.exit("radicale did not start")


def one(db, sql, *args):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute(sql, args).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def main():
    try:
        base = radicale()
        book = f"{base}/alice/contacts/"
        # Radicale reads the files once, on the first request: both runs below get them warm.
        auth = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        auth.add_password(None, base, "alice", PW)
        opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(auth))
        t = time.time()
        req = urllib.request.Request(book, method="PROPFIND", headers={"Depth": "1"})
        opener.open(req, timeout=300).read()
        print(f"feedmesh CardDAV benchmark: {os.cpu_count()} cores, {N} cards in Radicale "
              f"(its first listing {time.time() - t:.1f}s)")

        data, token = people.setup(B, "hub")
        hub = subprocess.Popen([B, "serve", "--listen", "127.0.0.1:0", "--allow-private-network"],
                               env=people.env_for(data), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        people.procs.append(hub)
        base_url = None
        for line in hub.stderr:
            if "serving on " in line:
                base_url = line.split("serving on ")[1].split()[0]
                break
        threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
        db = os.path.join(data, "feedmesh.db")
        t0 = time.time()
        out, _ = people.cli(B, data, "connector", "add", "bench", "carddav", "--allow-private-network",
                            "--option", f"url={book}", "--option", "user=alice", "--option", f"password={PW}")
        cid = out.split()[0]
        count = "SELECT COUNT(*) FROM contacts WHERE user_id = (SELECT id FROM users WHERE name = 'bench')"
        peak = 0
        while one(db, count) < N:
            rss = int(open(f"/proc/{hub.pid}/status").read().split("VmRSS:")[1].split()[0]) // 1024
            peak = max(peak, rss)
            if time.time() - t0 > 900:
                sys.exit(f"{one(db, count)} of {N} contacts in 900 s")
            time.sleep(0.05)
        first = time.time() - t0
        while one(db, "SELECT COUNT(*) FROM connectors WHERE id = ? AND last_sync_at IS NOT NULL", cid) == 0:
            time.sleep(0.05)
        print(f"4. first sync of {N} contacts: {first:.1f}s ({N / first:,.0f} cards/s, peak RSS {peak} MB)")

        # One card edited at the server, then a sync.
        time.sleep(1.1)
        body = card(7, "NOTE:changed at the server\r\n").encode()
        req = urllib.request.Request(f"{book}card-7.vcf", data=body, method="PUT",
                                     headers={"Content-Type": "text/vcard; charset=utf-8"})
        opener.open(req, timeout=60).read()
        t1 = time.time()
        since = int(t1 * 1000)
        urllib.request.urlopen(urllib.request.Request(f"{base_url}/api/connectors/{cid}/sync", method="POST",
                                                      headers={"Authorization": f"Bearer {token}"}), timeout=60).read()
        while one(db, "SELECT COUNT(*) FROM connectors WHERE id = ? AND last_sync_at >= ?", cid, since) == 0:
            if time.time() - t1 > 120:
                sys.exit("the sync after one change did not finish in 120 s")
            time.sleep(0.01)
        took = time.time() - t1
        # What Radicale itself takes to answer that sync-collection (from the token before).
        import json
        cur = json.loads(one(db, "SELECT cursor FROM connectors WHERE id = ?", cid) or "{}")
        token = json.loads(cur.get("state") or "{}").get("token") or ""
        body = (f'<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>'
                '<d:prop><d:getetag/></d:prop></d:sync-collection>').encode()
        t2 = time.time()
        opener.open(urllib.request.Request(book, data=body, method="REPORT",
                                           headers={"Depth": "1", "Content-Type": "application/xml"}), timeout=60).read()
        print(f"   a sync with one change (POST /api/connectors/ID/sync): {took * 1000:.0f} ms "
              f"(Radicale answers a sync-collection with nothing new in {(time.time() - t2) * 1000:.0f} ms)")
    finally:
        people.cleanup()


if __name__ == "__main__":
    main()
