"""The pages list's latency against a site's number of pages (bench/pages).

For each tally given as NAME=URL: imports a site of 10 pages and one of
10 000, then times sequential reads of two slices of each site's pages
list over one keep-alive connection, and reads of the first slice each
right after a hit on the site (not timed), and prints a Markdown table of
the median and p99 of each, with the ratio of the 10 000-page site to the
10-page one. Python 3 standard library only.
"""

import argparse
import datetime
import http.client
import json
import sys
import time
import urllib.parse

SIZES = (10, 10_000)
READS = ("limit=1", "limit=100&offset=5000")
# The first slice again, each read right after a hit on one of the site's
# pages: a read that cannot be answered from what the previous one saw.
AFTER_A_HIT = "limit=1"
WARMUP = 20
DAYS = 30
# A browser's: hits from what looks like a bot are answered, not counted.
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def request(conn, method, path, token=None, body=None):
    headers = {"User-Agent": BROWSER}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status} {data[:300]!r}")
    return data


def site(n):
    """An import entry: `n` pages, page i with 1 + (i * 7919) % 500 hits,
    each on one of the last 30 UTC days; the site holds them all."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    pages = []
    for i in range(n):
        hits = 1 + (i * 7919) % 500
        day = today - datetime.timedelta(days=i % DAYS)
        pages.append(
            {
                "page": f"/posts/{i:05d}/a-title-of-some-length",
                "count": hits,
                "daily": [{"d": day.isoformat(), "hits": hits}],
            }
        )
    return {
        "slug": f"pages-{n}",
        "count": sum(p["count"] for p in pages),
        "pages": pages,
    }


def percentile(sorted_ms, p):
    """Nearest rank."""
    rank = max(1, -(-len(sorted_ms) * p // 100))
    return sorted_ms[int(rank) - 1]


def timed(conn, path, token, requests, hit=None):
    """Reads with the admin token, which a private site's pages need; with
    `hit` (a site's hits path), each after a hit on it."""
    for _ in range(WARMUP):
        request(conn, "GET", path, token)
    took = []
    for _ in range(requests):
        if hit:
            request(conn, "POST", hit, body={"page": "/posts/00000/a-title-of-some-length"})
        start = time.perf_counter()
        request(conn, "GET", path, token)
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return percentile(took, 50), percentile(took, 99)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("targets", nargs="+", help="NAME=URL")
    args = parser.parse_args()
    print(f"{args.requests} sequential reads per row after {WARMUP} unrecorded, one keep-alive connection.")
    print()
    print("| store | request | 10 pages: median / p99 ms | 10 000 pages: median / p99 ms | 10 000 : 10, median / p99 |")
    print("|---|---|--:|--:|--:|")
    for target in args.targets:
        name, url = target.split("=", 1)
        host = urllib.parse.urlsplit(url).netloc
        conn = http.client.HTTPConnection(host, timeout=60)
        request(conn, "POST", "/api/v1/import", args.token, [site(n) for n in SIZES])
        for read, after_hit in [(r, False) for r in READS] + [(AFTER_A_HIT, True)]:
            figures = {}
            for n in SIZES:
                hit = f"/api/v1/sites/pages-{n}/hits" if after_hit else None
                path = f"/api/v1/sites/pages-{n}/pages?{read}"
                figures[n] = timed(conn, path, args.token, args.requests, hit)
            small, large = figures[SIZES[0]], figures[SIZES[1]]
            label = f"`pages?{read}`" + (", each after a hit" if after_hit else "")
            print(
                f"| {name} | {label} | {small[0]:.2f} / {small[1]:.2f} "
                f"| {large[0]:.2f} / {large[1]:.2f} "
                f"| {large[0] / small[0]:.1f} / {large[1] / small[1]:.1f} |"
            )
        conn.close()


if __name__ == "__main__":
    main()
