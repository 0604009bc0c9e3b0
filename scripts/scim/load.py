"""The SCIM load generator of scripts/bench-scim.sh: provisions SCIM_USERS users and SCIM_GROUPS groups
(SCIM_MEMBERS members each, chosen at random among the users) through /scim/v2 with CONCURRENCY
connections, as an identity provider's first push does, then measures list pages of 100
(users, and groups without members) and `userName eq` lookups. Standard library only.

    python load.py URL TOKEN
"""

import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

USERS = int(os.environ.get("SCIM_USERS", "10000"))
GROUPS = int(os.environ.get("SCIM_GROUPS", "1000"))
MEMBERS = int(os.environ.get("SCIM_MEMBERS", "10"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "8"))
PAGES = int(os.environ.get("PAGES", "200"))

local = threading.local()


def connection(url):
    if not hasattr(local, "conn"):
        parts = urllib.parse.urlsplit(url)
        local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        local.prefix = parts.path
    return local.conn


def call(url, token, method, path, body=None):
    conn = connection(url)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/scim+json"
    conn.request(method, local.prefix + path, body=data, headers=headers)
    response = conn.getresponse()
    text = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {text[:300]!r}")
    return json.loads(text) if text else None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    url, token = sys.argv[1], sys.argv[2]
    start = time.monotonic()

    def create_user(n):
        user = call(url, token, "POST", "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"user{n:05d}@example.com",
            "externalId": f"ext-{n}",
            "displayName": f"User {n}",
            "name": {"givenName": "User", "familyName": str(n)},
            "emails": [{"value": f"user{n:05d}@example.com", "type": "work", "primary": True}],
            "active": True,
        })
        return user["id"]

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ids = list(pool.map(create_user, range(USERS)))
    users_done = time.monotonic()
    rng = random.Random(7)

    def create_group(n):
        members = [{"value": i} for i in rng.sample(ids, min(MEMBERS, len(ids)))]
        call(url, token, "POST", "/Groups", {"displayName": f"group-{n:04d}", "members": members})

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(create_group, range(GROUPS)))
    groups_done = time.monotonic()
    print(f"provisioned {USERS} users in {users_done - start:.1f} s "
          f"({USERS / (users_done - start):.0f}/s) and {GROUPS} groups of {MEMBERS} members in "
          f"{groups_done - users_done:.1f} s; {groups_done - start:.1f} s in all "
          f"(concurrency {CONCURRENCY})")

    def timed(path):
        t = time.monotonic()
        answer = call(url, token, "GET", path)
        return (time.monotonic() - t) * 1000, answer

    for label, make in [
        ("GET /Users page of 100", lambda i: f"/Users?startIndex={1 + (i * 100) % max(1, USERS - 100)}&count=100"),
        ("GET /Groups page of 100 (excludedAttributes=members)",
         lambda i: f"/Groups?startIndex={1 + (i * 100) % max(1, GROUPS - 100)}&count=100&excludedAttributes=members"),
        ("GET /Groups page of 100 with their members",
         lambda i: f"/Groups?startIndex={1 + (i * 100) % max(1, GROUPS - 100)}&count=100"),
        ("GET /Users?filter=userName eq", lambda i: "/Users?filter=" + urllib.parse.quote(
            f'userName eq "user{(i * 37) % USERS:05d}@example.com"')),
    ]:
        times = []
        for i in range(PAGES):
            ms, answer = timed(make(i))
            assert answer["Resources"], answer
            times.append(ms)
        print(f"{label}: p50 {percentile(times, 50):.2f} ms, p99 {percentile(times, 99):.2f} ms, "
              f"max {max(times):.2f} ms over {PAGES} calls; {len(answer['Resources'])} per page, "
              f"totalResults {answer['totalResults']}")


if __name__ == "__main__":
    main()
