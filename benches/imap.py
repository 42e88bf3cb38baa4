#!/usr/bin/env python3
"""The IMAP benchmark (issue 14, parts 1 and 2), driven by scripts/bench-imap.

Dovecot in a scratch directory holds a BENCH_MESSAGES-message INBOX (default 10,000: 200
senders, 2-6 KB of text, one in twenty with a 40 KB attachment).

1. Initial sync, side by side in one run: `mbsync` (isync) copies the mailbox to a maildir;
   the hub's imap connector takes it into a fresh hub (parsing, linking to 200 contacts,
   indexing every message for search). Messages per second, and the ratio (target >= 0.5).
2. With the connector idling, BENCH_DELIVERIES (50) messages are delivered one at a time
   with `doveadm save`; each one's time until it is in the sender's contact timeline feed
   (polled every 10 ms): p50 and p99 (target p99 < 1 s).
"""
import base64
import importlib.util
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("people", os.path.join(HERE, "people.py"))
people = importlib.util.module_from_spec(spec)
spec.loader.exec_module(people)

B = people.B
W = people.W
N = int(os.environ.get("BENCH_MESSAGES", "10000"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "50"))
PW = "bench-secret"


def free_port():
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    sys.exit("no free port")


def dovecot():
    d = os.path.join(W, "imap")
    for sub in ("run", "state", "mail"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(W, 0o755)
    os.chmod(d, 0o755)
    port = free_port()
    conf = os.path.join(d, "dovecot.conf")
    open(conf, "w").write(f"""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{d}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
mailbox_idle_check_interval = 1 secs
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
passdb {{
  driver = static
  args = password={PW}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
""")
    p = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    people.procs.append(p)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return d, conf, port
        time.sleep(0.05)
    sys.exit("dovecot did not start")


def message(i, attach):
    sender = i % 200
    body = f"Message {i} about the order.\r\n" + ("Lorem ipsum dolor sit amet, consectetur. " * random.randint(50, 150))
    head = (f"From: Sender {sender} <s{sender}@example.org>\r\nTo: Alice <alice@example.net>\r\n"
            f"Cc: s{(sender + 1) % 200}@example.org\r\nSubject: Order {i}\r\n"
            f"Date: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <bench{i}@example.org>\r\n")
    if not attach:
        return (head + "\r\n" + body + "\r\n").encode()
    data = base64.encodebytes(os.urandom(40 * 1024)).decode().replace("\n", "\r\n")
    return (head + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            f"--b\r\nContent-Type: text/plain\r\n\r\n{body}\r\n--b\r\nContent-Type: application/pdf; name=\"o{i}.pdf\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{data}\r\n--b--\r\n").encode()


def fill(d):
    home = os.path.join(d, "mail", "alice")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    size = 0
    for i in range(N):
        m = message(i, i % 20 == 0)
        size += len(m)
        # An existing mailbox: mail already read, in cur/, each file named with its size as
        # Dovecot names its own (without, Dovecot stats every file at each look: 0.4 s a
        # look with 10,000, which both clients would pay).
        name = f"{1700000000 + i}.M{i}P1.bench,S={len(m)}:2,S"
        open(os.path.join(home, "cur", name), "wb").write(m)
    subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(d, "mail")], check=True)
    return size


def mbsync(port):
    local = os.path.join(W, "mbsync")
    os.makedirs(local, exist_ok=True)
    cfg = os.path.join(W, "mbsyncrc")
    open(cfg, "w").write(f"""IMAPAccount bench
Host 127.0.0.1
Port {port}
User alice
Pass {PW}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
""")
    t0 = time.time()
    out = subprocess.run(["mbsync", "-c", cfg, "-a"], capture_output=True, text=True)
    took = time.time() - t0
    if out.returncode != 0:
        sys.exit(f"mbsync failed: {out.stderr[-2000:]}")
    got = len(os.listdir(os.path.join(local, "INBOX", "new"))) + len(os.listdir(os.path.join(local, "INBOX", "cur")))
    if got != N:
        sys.exit(f"mbsync copied {got} of {N}")
    return took


def items(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute("SELECT COUNT(*) FROM items i JOIN collections c ON c.id = i.collection_id "
                         "WHERE c.name = 'imap'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def get(base, token, path):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    try:
        d, conf, port = dovecot()
        size = fill(d)
        # Dovecot indexes the new mail on first access: both clients get it indexed.
        subprocess.run(["doveadm", "-c", conf, "mailbox", "status", "-u", "alice", "messages", "INBOX"],
                       check=True, capture_output=True)
        print(f"feedmesh IMAP benchmark: {os.cpu_count()} cores, {N} messages, {size / 1e6:.1f} MB, Dovecot on 127.0.0.1")
        m_took = mbsync(port)

        data, token = people.setup(B, "hub")
        cards = "".join(f"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Sender {i}\r\nEMAIL:s{i}@example.org\r\nEND:VCARD\r\n"
                        for i in range(200))
        open(os.path.join(W, "c.vcf"), "w").write(cards)
        people.cli(B, data, "contact", "import", "bench", os.path.join(W, "c.vcf"))
        hub = subprocess.Popen([B, "serve", "--listen", "127.0.0.1:0", "--allow-private-network"],
                               env=people.env_for(data), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        people.procs.append(hub)
        base = None
        for line in hub.stderr:
            if "serving on " in line:
                base = line.split("serving on ")[1].split()[0]
                break
        if not base:
            sys.exit("serve did not start")
        import threading
        threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
        db = os.path.join(data, "feedmesh.db")
        t0 = time.time()
        people.cli(B, data, "connector", "add", "bench", "imap", "--allow-private-network",
                   "--option", "host=127.0.0.1", "--option", f"port={port}", "--option", "tls=none",
                   "--option", "user=alice", "--option", f"password={PW}", "--option", "mailbox=INBOX")
        peak = 0
        while items(db) < N:
            rss = int(open(f"/proc/{hub.pid}/status").read().split("VmRSS:")[1].split()[0]) // 1024
            peak = max(peak, rss)
            if time.time() - t0 > 900:
                sys.exit(f"the hub took {items(db)} of {N} in 900 s")
            time.sleep(0.05)
        h_took = time.time() - t0
        print(f"1. initial sync of {N} messages: mbsync {m_took:.1f}s ({N / m_took:,.0f} msg/s); "
              f"feedmesh {h_took:.1f}s ({N / h_took:,.0f} msg/s, peak RSS {peak} MB); "
              f"ratio {m_took / h_took:.2f} (target >= 0.5)")

        # 2. Delivery to the contact's timeline while the connector idles.
        contacts = get(base, token, "/api/contacts")
        sender = next(c for c in contacts if c["name"] == "Sender 7")
        path = f"/u/bench/contacts/{sender['id']}/timeline.json?limit=5"
        deadline = time.time() + 30
        while not any(c.get("listening") for c in get(base, token, "/api/connectors")):
            if time.time() > deadline:
                sys.exit("the connector is not listening")
            time.sleep(0.1)
        lat, polls, saves = [], [], []
        for k in range(DELIVERIES):
            subject = f"Delivered {k}"
            m = (f"From: Sender 7 <s7@example.org>\r\nTo: alice@example.net\r\nSubject: {subject}\r\n"
                 f"Message-ID: <live{k}@example.org>\r\n\r\nNow.\r\n").encode()
            t = time.time()
            subprocess.run(["doveadm", "-c", conf, "save", "-u", "alice", "-m", "INBOX"], input=m, check=True)
            saves.append(time.time() - t)
            while True:
                q = time.time()
                found = any(i.get("title") == subject for i in get(base, token, path)["items"])
                polls.append(time.time() - q)
                if found:
                    break
                if time.time() - t > 30:
                    sys.exit(f"{subject} did not arrive in 30 s")
                time.sleep(0.01)
            lat.append(time.time() - t)
            time.sleep(0.2)
        print(f"2. delivery to the contact's timeline while idling ({DELIVERIES} messages): "
              f"p50 {people.pct(lat, 0.5) * 1000:.0f} ms, p99 {people.pct(lat, 0.99) * 1000:.0f} ms (target p99 < 1000 ms; one poll of the feed p50 {people.pct(polls, 0.5) * 1000:.0f} ms, "
              f"doveadm save itself p50 {people.pct(saves, 0.5) * 1000:.0f} ms)")
    finally:
        people.cleanup()


if __name__ == "__main__":
    main()
