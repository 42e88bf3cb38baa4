#!/usr/bin/env python3
"""The people benchmark (issue 12), side by side in one run; driven by scripts/bench-people.

On BENCH_ACTIVITIES activities (default 1,000,000) and BENCH_CONTACTS contacts (default
10,000, three identities each), it prints:
 1. ingest with linking through AtomPub (16 clients), against the hub before activities
    (FEEDMESH_BASE_BIN, built from BENCH_BASE) ingesting the same entries without linking;
 2. the first page of contact timelines and searches, p50/p99 of cold renders, and a contact
    timeline under wrk -c64 against nginx serving the same bytes;
 3. search through the hub against the same SQL (FTS5) run by the sqlite3 shell on the file;
 4. a merge and an undo of two contacts with BENCH_MERGE_SHARE of the activities between them;
 5. resident memory of serve;
 6. a gzip feed against nginx's gzip_static of the same pre-compressed bytes (nproc workers);
 7. every feed kind under a steady write load: reads and writes against each alone;
 8. the web app's stream, contact and search pages (server time, p50/p99 of cold renders),
    and the Google Reader API's stream contents of 1,000 items, with nginx serving the same
    bytes for scale.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

B = os.environ["FEEDMESH_BIN"]
BASE_B = os.environ.get("FEEDMESH_BASE_BIN")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ACTIVITIES = int(os.environ.get("BENCH_ACTIVITIES", "1000000"))
CONTACTS = int(os.environ.get("BENCH_CONTACTS", "10000"))
MERGE_SHARE = float(os.environ.get("BENCH_MERGE_SHARE", "0.1"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
VOCAB = 1000
CORES = os.cpu_count() or 2
# Which of the eight figures to measure (default all), e.g. BENCH_PARTS=1,7.
PARTS = {int(x) for x in os.environ.get("BENCH_PARTS", "1,2,3,4,5,6,7,8").split(",") if x.strip()}

W = tempfile.mkdtemp(prefix="feedmesh-people-bench.")
os.chmod(W, 0o755)
procs = []


def cleanup(*_):
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass
    shutil.rmtree(W, ignore_errors=True)


def env_for(data):
    e = dict(os.environ)
    e.update({"FEEDMESH_DATA_DIR": data, "FEEDMESH_LOG": "info,sqlx=warn"})
    e.pop("FEEDMESH_DATABASE_URL", None)
    return e


def cli(binary, data, *args, stdin=None):
    out = subprocess.run([binary, *args], env=env_for(data), input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)}: {out.stderr}")
    return out.stdout, out.stderr


def serve(binary, data):
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=env_for(data),
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    procs.append(p)
    for line in p.stderr:
        m = re.search(r"serving on (\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, m.group(1)
    sys.exit(f"{binary} serve did not start")


def setup(binary, name):
    data = os.path.join(W, name)
    cli(binary, data, "user", "add", "bench")
    token = cli(binary, data, "token", "add", "bench", "--device", "bench")[0].strip().splitlines()[-1]
    cli(binary, data, "collection", "add", "bench", "Notes")
    return data, token


class Client:
    def __init__(self, base, token):
        u = urllib.parse.urlparse(base)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method, path, body=None, ctype=None, headers=None):
        h = {"Authorization": f"Bearer {self.token}"}
        if ctype:
            h["Content-Type"] = ctype
        h.update(headers or {})
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                return r.status, r.read(), r
            except (http.client.HTTPException, ConnectionError):
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise


def wrk(args, url):
    out = subprocess.run(["wrk", *args, url], capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"^non2xx (\d+)", out, re.M)
    return (float(m.group(1)) if m else 0.0), (int(bad.group(1)) if bad else 0)


def median(xs):
    return statistics.median(xs) if xs else 0.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


def lua_post(path, token, body_expr, extra=""):
    """A wrk script posting generated entries (Lua builds each body)."""
    src = f"""
math.randomseed(os.time() + (tonumber(tostring({{}}):sub(8), 16) or 0))
local n = 0
{extra}
request = function()
  n = n + 1
  local body = {body_expr}
  return wrk.format("POST", nil, {{["Content-Type"] = "application/atom+xml;type=entry",
    ["Authorization"] = "Bearer {token}"}}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx %d\\n", summary.errors.status))
end
"""
    open(path, "w").write(src)
    return path


PEOPLE_ENTRY = f"""
local function words(k)
  local t = {{}}
  for i = 1, k do t[i] = "w" .. math.random(0, {VOCAB - 1}) end
  return table.concat(t, " ")
end
local function person()
  local r = math.random()
  if r < {MERGE_SHARE / 2} then return 0 elseif r < {MERGE_SHARE} then return 1 end
  return math.random(2, {CONTACTS - 1})
end
local function entry()
  local a, b = person(), math.random(0, {CONTACTS - 1})
  return '<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/">' ..
    '<title>Mail ' .. n .. ' ' .. words(2) .. '</title><content type="text">' .. words(8) .. '</content>' ..
    '<author><name>Contact ' .. a .. '</name><email>c' .. a .. '@co' .. (a % 500) .. '.example</email></author>' ..
    '<link rel="mentioned" href="tel:+1415555' .. string.format("%04d", b % 10000) .. '"/>' ..
    '<activity:object-type>email</activity:object-type></entry>'
end
"""


def vcards(n):
    out = []
    for i in range(n):
        tag = "CATEGORIES:customer\r\n" if i % 10 == 0 else ""
        out.append(
            f"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Contact {i}\r\nORG:Company {i % 500}\r\n"
            f"EMAIL:c{i}@co{i % 500}.example\r\nTEL;VALUE=uri:tel:+1415555{i % 10000:04d}\r\n"
            f"X-SOCIALPROFILE:acct:c{i}@social.example\r\n{tag}END:VCARD\r\n")
    return "".join(out)


def count(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    finally:
        c.close()


def nginx(root, gzip_static=False, workers=1):
    d = os.path.join(W, f"ngx-{len(procs)}")
    os.makedirs(os.path.join(d, "logs"))
    os.makedirs(os.path.join(d, "tmp"))
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = f"""worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  types {{ application/atom+xml atom; }}
  {"gzip_static on; gzip_vary on;" if gzip_static else ""}
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    open(os.path.join(d, "nginx.conf"), "w").write(conf)
    subprocess.run([NGINX, "-c", os.path.join(d, "nginx.conf"), "-p", d], check=True)
    time.sleep(0.2)
    pid = int(open(os.path.join(d, "nginx.pid")).read())

    class P:
        def kill(self):
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
    procs.append(P())
    return f"http://127.0.0.1:{port}"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def timed(c, path, headers=None, method="GET", body=None, ctype=None):
    t = time.perf_counter()
    st, out, _ = c.request(method, path, body, ctype, headers)
    ms = (time.perf_counter() - t) * 1000
    assert st == 200, (path, st, out[:300])
    return ms, out


def pages_and_readers(base, token, data, ids):
    """8. The web app's pages and the Google Reader API on the full data set."""
    c = Client(base, token)
    head = count(os.path.join(data, "feedmesh.db"))
    stream = [timed(c, "/")[0]]
    stream += [timed(c, f"/?before={random.randrange(50, head)}")[0] for _ in range(SAMPLES)]
    contact = [timed(c, f"/contacts/{cid}")[0] for cid in random.sample(ids, min(SAMPLES, len(ids)))]
    search = []
    for i in range(SAMPLES):
        q = f"w{random.randrange(VOCAB)}" if i % 2 else f"w{random.randrange(VOCAB)} w{random.randrange(VOCAB)}"
        search.append(timed(c, "/search?q=" + urllib.parse.quote(q))[0])
    # The same pages loaded whole in Chromium (HTML, the stylesheet, the script).
    peers = os.environ.get("FEEDMESH_PEERS_DIR") or os.path.expanduser("~/.cache/feedmesh-peers")
    node, chromium = shutil.which("node"), shutil.which("chromium") or "/usr/bin/chromium"
    loads = None
    if node and os.path.exists(chromium) and os.path.isdir(os.path.join(peers, "node_modules/playwright-core")):
        paths = ["/"] + [f"/?before={random.randrange(50, head)}" for _ in range(20)]
        paths += [f"/contacts/{cid}" for cid in random.sample(ids, min(20, len(ids)))]
        paths += [f"/search?q=w{random.randrange(VOCAB)}" for _ in range(20)]
        out = subprocess.run([node, os.path.join(os.path.dirname(__file__), "page_load.mjs")],
                             env={**os.environ, "FM_BASE": base, "FM_TOKEN": token, "FM_PATHS": "\n".join(paths),
                                  "FM_PEERS": peers, "FM_CHROMIUM": chromium},
                             capture_output=True, text=True)
        if out.returncode == 0:
            loads = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            print(f"   Chromium page loads failed: {out.stderr[-500:]}")
    print(f"8. web pages (server time, cold): stream p50 {pct(stream, .5):.1f} ms, p99 {pct(stream, .99):.1f} ms; "
          f"contact p50 {pct(contact, .5):.1f} ms, p99 {pct(contact, .99):.1f} ms; "
          f"search p50 {pct(search, .5):.1f} ms, p99 {pct(search, .99):.1f} ms (target p99 < 30 each)")
    if loads:
        print("   full page load in Chromium (navigation start to load event, target < 300 ms): " + "; ".join(
            f"{p} p50 {pct(v, .5):.0f} ms, max {max(v):.0f} ms" for p, v in loads.items()))
    # The Google Reader API, logged in as a reader app is (ClientLogin with a password).
    cli(B, data, "user", "passwd", "bench", stdin="bench-password-1\n")
    st, body, _ = c.request("POST", "/api/greader/accounts/ClientLogin",
                            urllib.parse.urlencode({"Email": "bench", "Passwd": "bench-password-1"}),
                            "application/x-www-form-urlencoded")
    assert st == 200, body
    auth = {"Authorization": "GoogleLogin auth=" + re.search(rb"Auth=(\S+)", body).group(1).decode()}
    path = "/api/greader/reader/api/0/stream/contents/user%2F-%2Fstate%2Fcom.google%2Freading-list?n=1000"
    gr, last = [], b""
    for i in range(max(20, SAMPLES // 4)):
        ms, last = timed(c, path + ("" if i == 0 else f"&c={random.randrange(1000, head)}"), auth)
        gr.append(ms)
    items = len(json.loads(last)["items"])
    www = os.path.join(W, "www-greader")
    os.makedirs(www, exist_ok=True)
    open(os.path.join(www, "contents.json"), "wb").write(last)
    ngx = nginx(www)
    u = urllib.parse.urlparse(ngx)
    nc = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    ng = []
    for _ in range(len(gr)):
        t = time.perf_counter()
        nc.request("GET", "/contents.json")
        nc.getresponse().read()
        ng.append((time.perf_counter() - t) * 1000)
    print(f"   Google Reader stream/contents, {items} items ({len(last)} bytes): p50 {pct(gr, .5):.1f} ms, "
          f"p99 {pct(gr, .99):.1f} ms (target < 50); nginx serving the same bytes p50 {pct(ng, .5):.2f} ms")


def main():
    print(f"feedmesh people benchmark: {CORES} cores, {SECS}s per run, medians of {ROUNDS} runs, "
          f"{ACTIVITIES} activities, {CONTACTS} contacts with {3 * CONTACTS} identities")
    # The hub with contacts (linking) and, for comparison, the hub before activities.
    data, token = setup(B, "hub")
    vcf = os.path.join(W, "contacts.vcf")
    open(vcf, "w").write(vcards(CONTACTS))
    t0 = time.time()
    _, err = cli(B, data, "contact", "import", "bench", vcf)
    print(f"   contact import: {CONTACTS} cards in {time.time() - t0:.1f}s ({err.strip().splitlines()[-1]})")
    hub, base = serve(B, data)
    post = lua_post(os.path.join(W, "people.lua"), token, "entry()", PEOPLE_ENTRY)

    # 1. ingest with linking against the hub before activities.
    now_runs, base_runs = [], []
    if BASE_B:
        bdata, btoken = setup(BASE_B, "base")
        bhub, bbase = serve(BASE_B, bdata)
        bpost = lua_post(os.path.join(W, "people-base.lua"), btoken, "entry()", PEOPLE_ENTRY)
    for _ in range(ROUNDS if 1 in PARTS else 0):
        if BASE_B:
            base_runs.append(wrk(["-t2", "-c16", f"-d{SECS}s", "-s", bpost], f"{bbase}/atompub/bench/Notes")[0])
        rate, bad = wrk(["-t2", "-c16", f"-d{SECS}s", "-s", post], f"{base}/atompub/bench/Notes")
        now_runs.append(rate)
        if bad:
            print(f"   {bad} non-2xx answers to ingest")
    if BASE_B:
        bhub.kill()
    ingest, before = median(now_runs), median(base_runs)
    if 1 in PARTS:
        print(f"   runs (entries/s): with linking {[int(x) for x in now_runs]} | before activities {[int(x) for x in base_runs]}")
        print(f"1. ingest with linking, 16 clients: {int(ingest)} activities/s; before activities (no linking) "
              f"{int(before)}/s; ratio {ratio(ingest, before)} (target >= 0.8)")
    if not PARTS - {1}:
        return

    # Load to the size asked.
    db = os.path.join(data, "feedmesh.db")
    t0 = time.time()
    n = count(db)
    while n < ACTIVITIES:
        wrk(["-t2", "-c16", "-d30s", "-s", post], f"{base}/atompub/bench/Notes")
        n = count(db)
        print(f"   loaded {n} activities ({int(n / (time.time() - t0 + 1e-9))}/s)", file=sys.stderr)
    c = Client(base, token)
    contacts = json.loads(c.request("GET", "/api/contacts")[1])
    by_name = {x["name"]: x["id"] for x in contacts}
    ids = [x["id"] for x in contacts]
    random.seed(7)

    if 8 in PARTS:
        pages_and_readers(base, token, data, ids)
    if not PARTS - {1, 8}:
        return

    # 2. cold first pages of timelines and searches.
    lat_t, lat_s = [], []
    for cid in random.sample(ids, min(SAMPLES, len(ids))):
        t = time.perf_counter()
        st, _, _ = c.request("GET", f"/u/bench/contacts/{cid}/timeline.atom")
        lat_t.append((time.perf_counter() - t) * 1000)
        assert st == 200, st
    queries = []
    for i in range(SAMPLES):
        q = f"w{random.randrange(VOCAB)}" if i % 2 else f"w{random.randrange(VOCAB)} w{random.randrange(VOCAB)}"
        queries.append(q)
        t = time.perf_counter()
        st, body, _ = c.request("GET", "/u/bench/search.atom?q=" + urllib.parse.quote(q))
        lat_s.append((time.perf_counter() - t) * 1000)
        assert st == 200, (st, body[:200])
    print(f"2. contact timeline first page: p50 {pct(lat_t, .5):.1f} ms, p99 {pct(lat_t, .99):.1f} ms (target p99 < 20); "
          f"search: p50 {pct(lat_s, .5):.1f} ms, p99 {pct(lat_s, .99):.1f} ms (target p99 < 50)")
    sample = by_name.get("Contact 10") or ids[0]
    www = os.path.join(W, "www")
    os.makedirs(www)
    st, body, _ = c.request("GET", f"/u/bench/contacts/{sample}/timeline.atom")
    open(os.path.join(www, "timeline.atom"), "wb").write(body)
    ngx = nginx(www)
    hub_r, ngx_r = [], []
    auth = f"Authorization: Bearer {token}"
    for _ in range(ROUNDS):
        ngx_r.append(wrk(["-t2", "-c64", f"-d{SECS}s"], f"{ngx}/timeline.atom")[0])
        hub_r.append(wrk(["-t2", "-c64", f"-d{SECS}s", "-H", auth], f"{base}/u/bench/contacts/{sample}/timeline.atom")[0])
    print(f"   contact timeline ({len(body)} bytes) under wrk -c64: feedmesh {int(median(hub_r))} req/s, nginx "
          f"{int(median(ngx_r))} req/s, ratio {ratio(median(hub_r), median(ngx_r))} (target >= 0.8)")

    # 3. search through the hub against the same SQL in the sqlite3 shell.
    sqlq = []
    for q in queries:
        fts = "(" + " AND ".join(f'"{w}"' for w in q.split()) + ")"
        sqlq.append(
            "SELECT c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version, c.verb, "
            "c.object_type FROM changes c JOIN collections col ON col.id = c.collection_id LEFT JOIN endpoints e ON "
            "e.id = c.endpoint_id WHERE c.user_id = 1 AND c.seq IN (SELECT rowid - 1099511627776 FROM activity_text "
            f"WHERE activity_text MATCH '{fts}' AND rowid > 1099511627776 AND rowid < 2199023255552) "
            "AND c.seq < 9223372036854775807 ORDER BY c.seq DESC LIMIT 50;")
    t = time.perf_counter()
    subprocess.run(["sqlite3", db], input="\n".join(sqlq), capture_output=True, text=True, check=True)
    shell = len(sqlq) / (time.perf_counter() - t)
    c2 = Client(base, token)
    t = time.perf_counter()
    for i, q in enumerate(queries):
        # A fresh URL each time (no cache): every search renders.
        c2.request("GET", f"/u/bench/search.atom?q={urllib.parse.quote(q)}&limit=50&n={i}")
    through = len(queries) / (time.perf_counter() - t)
    print(f"3. search: through the hub {through:.0f} queries/s, the same SQL in the sqlite3 shell {shell:.0f}/s, "
          f"ratio {ratio(through, shell)} (target >= 0.5)")

    # 4. merge and undo of the two contacts the load favoured.
    a, b = by_name["Contact 0"], by_name["Contact 1"]
    ca = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    between = ca.execute(
        "SELECT COUNT(DISTINCT ap.seq) FROM activity_people ap JOIN contact_identities ci ON ci.user_id = ap.user_id "
        "AND ci.identity = ap.identity WHERE ci.contact_id IN (?, ?)", (a, b)).fetchone()[0]
    ca.close()
    t = time.perf_counter()
    st, body, _ = c.request("POST", f"/api/contacts/{a}/merge", json.dumps({"other": b}), "application/json")
    merge_s = time.perf_counter() - t
    assert st == 200, body
    merge_id = json.loads(body)["merge_id"]
    t = time.perf_counter()
    st, body, _ = c.request("POST", f"/api/contacts/merges/{merge_id}/undo")
    undo_s = time.perf_counter() - t
    assert st == 200, body
    print(f"4. merge of two contacts with {between} activities: {merge_s * 1000:.0f} ms, undo {undo_s * 1000:.0f} ms (target < 1000 each)")

    # 5. memory.
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{hub.pid}/status").read()).group(1)) // 1024
    print(f"5. serve RSS at {count(db)} activities: {rss} MB (target < 150)")

    # 6. gzip against nginx gzip_static with as many workers as cores.
    st, plain, _ = c.request("GET", "/u/bench/stream.atom")
    gz = os.path.join(W, "gz")
    os.makedirs(gz)
    open(os.path.join(gz, "feed.atom"), "wb").write(plain)
    st, zbody, r = c.request("GET", "/u/bench/stream.atom", headers={"Accept-Encoding": "gzip"})
    assert r.getheader("Content-Encoding") == "gzip"
    open(os.path.join(gz, "feed.atom.gz"), "wb").write(zbody)
    ngz = nginx(gz, gzip_static=True, workers=CORES)
    g_hub, g_ngx = [], []
    for _ in range(ROUNDS):
        g_ngx.append(wrk(["-t2", "-c64", f"-d{SECS}s", "-H", "Accept-Encoding: gzip"], f"{ngz}/feed.atom")[0])
        g_hub.append(wrk(["-t2", "-c64", f"-d{SECS}s", "-H", "Accept-Encoding: gzip", "-H", auth], f"{base}/u/bench/stream.atom")[0])
    print(f"6. gzip stream ({len(plain)} bytes, {len(zbody)} compressed): feedmesh {int(median(g_hub))} req/s, nginx gzip_static "
          f"({CORES} workers) {int(median(g_ngx))} req/s, ratio {ratio(median(g_hub), median(g_ngx))} (target >= 1.0)")

    # 7. feeds under a steady write load: one device writing as fast as it can (one
    # connection), 32 readers polling; every write lands in every feed measured.
    st, body, _ = c.request("POST", "/api/views", json.dumps({"name": "customers", "query": {"tags": ["customer"]}}), "application/json")
    assert st in (200, 201), body
    writer = lua_post(os.path.join(W, "load.lua"), token,
                      '\'<entry xmlns="http://www.w3.org/2005/Atom"><title>load \' .. n .. \'</title>'
                      '<content type="text">loadword \' .. n .. \'</content><author><name>C</name>'
                      '<email>c10@co10.example</email></author></entry>\'')
    kinds = [("stream", "/u/bench/stream.atom"), ("contact timeline", f"/u/bench/contacts/{sample}/timeline.atom"),
             ("view", "/u/bench/views/customers.atom"), ("search", "/u/bench/search.atom?q=loadword")]
    write_alone = median([wrk(["-t1", "-c1", f"-d{SECS}s", "-s", writer], f"{base}/atompub/bench/Notes")[0] for _ in range(ROUNDS)])
    print(f"7. under a write load (one writer alone: {int(write_alone)} writes/s; 32 readers):")
    for name, path in kinds:
        alone = median([wrk(["-t2", "-c32", f"-d{SECS}s", "-H", auth], base + path)[0] for _ in range(ROUNDS)])
        reads, writes = [], []
        for _ in range(ROUNDS):
            res = {}
            th = threading.Thread(target=lambda: res.update(w=wrk(["-t1", "-c1", f"-d{SECS}s", "-s", writer], f"{base}/atompub/bench/Notes")[0]))
            th.start()
            reads.append(wrk(["-t2", "-c32", f"-d{SECS}s", "-H", auth], base + path)[0])
            th.join()
            writes.append(res["w"])
        r, w = median(reads), median(writes)
        print(f"   {name}: reads {int(r)}/s under load vs {int(alone)}/s alone, ratio {ratio(r, alone)} (target >= 0.5); "
              f"writer {int(w)}/s vs {int(write_alone)}/s alone, ratio {ratio(w, write_alone)} (target >= 0.8)")


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
