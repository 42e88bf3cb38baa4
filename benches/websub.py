"""WebSub fan-out benchmark driver (run by scripts/bench-websub; not a test).

Measures, against one nginx callback server that echoes challenges and logs each request
with millisecond times: (1) one publish to N signed subscribers on feedmesh, deliveries/s;
(2) publish-to-delivery latency with 100 subscribers, p50 and p99; (3) the same fan-out
through Flask-WebSub to M subscribers, deliveries/s, and the ratio. The fan-outs run in
BENCH_ROUNDS (default 3) alternating rounds, one of each hub per round; medians are reported.
"""
import http.client, json, os, statistics, sys, threading, time, urllib.parse

LOG = os.environ["CB_LOG"]
CB = int(os.environ["CB_PORT"])
HUB_PORT = int(os.environ["HUB_PORT"])
TOKEN = os.environ["TOKEN"]
LAT_TOKEN = os.environ["LAT_TOKEN"]
N = int(os.environ.get("BENCH_SUBSCRIBERS", "10000"))
FLASK_N = int(os.environ.get("BENCH_FLASK_SUBSCRIBERS", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


class Log:
    """The callback server's access log, read incrementally: each poll parses only the lines
    written since the last one, so watching costs next to no CPU (the hub under test shares
    the cores with this driver)."""

    def __init__(self, path):
        self.f = open(path)
        self.rest = ""
        self.seen = {}  # (method, first path segment pair) -> [times]

    def poll(self):
        data = self.rest + self.f.read()
        lines = data.split("\n")
        self.rest = lines.pop()  # a line still being written
        for line in lines:
            parts = line.split()
            if len(parts) >= 3:
                key = (parts[1], "/".join(parts[2].split("/")[:3]) + "/")
                self.seen.setdefault(key, []).append(float(parts[0]))

    def times(self, method, prefix):
        self.poll()
        return self.seen.get((method, prefix), [])


LOG_READER = Log(LOG)


def log_lines(method, prefix):
    return LOG_READER.times(method, prefix)


def wait_for(method, prefix, count, limit=600):
    start = time.time()
    while len(log_lines(method, prefix)) < count:
        if time.time() - start > limit:
            sys.exit(f"timed out: {len(log_lines(method, prefix))}/{count} {method} {prefix}")
        time.sleep(0.02)


def form_posts(port, path, forms, threads=8):
    """POSTs form bodies over keep-alive connections from a few threads; checks 2xx."""
    def worker(chunk):
        c = http.client.HTTPConnection("127.0.0.1", port)
        for f in chunk:
            c.request("POST", path, urllib.parse.urlencode(f), {"Content-Type": "application/x-www-form-urlencoded"})
            r = c.getresponse()
            r.read()
            assert r.status // 100 == 2, (r.status, f)
    ts = [threading.Thread(target=worker, args=(forms[i::threads],)) for i in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]


def feedmesh_key(feed, token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", HUB_PORT)
    c.request("POST", "/api/keys", json.dumps({"feed": feed}), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.loads(c.getresponse().read())["url"]


def publish(title, user="bench", token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", HUB_PORT)
    body = f'<entry xmlns="http://www.w3.org/2005/Atom"><title>{title}</title><content>x</content></entry>'
    t = time.time()
    c.request("POST", f"/atompub/{user}/Notes", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/atom+xml;type=entry"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return t


def subscribe_all(port, path, topic, prefix, n):
    forms = [{"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": f"http://127.0.0.1:{CB}{prefix}{i}",
              "hub.secret": "bench-secret", "hub.lease_seconds": "86400"} for i in range(n)]
    form_posts(port, path, forms)
    wait_for("GET", prefix, n)


def fan_out(prefix, n, round_no, publish_fn):
    """Round `round_no` (from 0) of a fan-out to the n subscribers under prefix: deliveries/s
    from the publish to the round's last delivery, and that time."""
    t0 = publish_fn()
    wait_for("POST", prefix, n * (round_no + 1))
    last = max(log_lines("POST", prefix))
    return n / (last - t0), last - t0


def flask_publish():
    t = time.time()
    form_posts(flask_port, "/", [{"hub.mode": "publish", "hub.topic": flask_topic}], threads=1)
    return t


# Both hubs' subscribers first; then ROUNDS fan-outs of each, alternating, so that both meet
# the same moods of the machine; the medians are reported.
topic = feedmesh_key("/u/bench/stream.atom")
subscribe_all(HUB_PORT, "/hub", topic, "/cb/fm/", N)
flask_port = int(os.environ["FLASK_PORT"])
flask_topic = os.environ["FLASK_TOPIC"]
subscribe_all(flask_port, "/", flask_topic, "/cb/fl/", FLASK_N)
time.sleep(1.5)  # let the verified subscriptions settle
runs, fruns = [], []
for k in range(ROUNDS):
    runs.append(fan_out("/cb/fm/", N, k, lambda: publish(f"fan-out {k}")))
    time.sleep(0.5)
    fruns.append(fan_out("/cb/fl/", FLASK_N, k, flask_publish))
    time.sleep(0.5)


def median_run(rs):
    return sorted(rs)[len(rs) // 2]


def each(rs):
    return ", ".join(f"{r:,.0f}" for r, _ in rs)


rate, secs = median_run(runs)
frate, fsecs = median_run(fruns)
ratios = [a / b for (a, _), (b, _) in zip(runs, fruns)]
print(f"1. fan-out: {N} signed deliveries in {secs:.2f} s = {rate:,.0f} deliveries/s, median of {ROUNDS} "
      f"({each(runs)}) (target >= 20,000/s)")

# 2. latency with 100 subscribers of another user's feed.
topic2 = feedmesh_key("/u/lat/stream.json", LAT_TOKEN)
subscribe_all(HUB_PORT, "/hub", topic2, "/cb/lat/", 100)
samples = []
for k in range(20):
    t = publish(f"latency {k}", "lat", LAT_TOKEN)
    wait_for("POST", "/cb/lat/", 100 * (k + 1))
    times = sorted(log_lines("POST", "/cb/lat/"))[100 * k:100 * (k + 1)]
    samples += [(x - t) * 1000 for x in times]
    time.sleep(0.05)
q = statistics.quantiles(samples, n=100)
print(f"2. latency, 100 subscribers x 20 publishes: p50 {statistics.median(samples):.1f} ms, p99 {q[98]:.1f} ms (target p99 < 50 ms)")

# 3. Flask-WebSub: the same kind of fan-out to FLASK_N subscribers, in the same rounds.
print(f"3. Flask-WebSub: {FLASK_N} signed deliveries in {fsecs:.2f} s = {frate:,.0f} deliveries/s, median of {ROUNDS} "
      f"({each(fruns)}); feedmesh/Flask-WebSub = {rate / frate:.1f}x (medians; round by round "
      f"{', '.join(f'{r:.1f}x' for r in ratios)}) (target >= 50x)")
