"""Run every scim2-tester check against a SCIM server and print one line per result.

    python check.py URL TOKEN

URL is the SCIM base (http://HOST/scim/v2). Each result is printed as
"STATUS TITLE [RESOURCE_TYPE]" with its reason indented below, as scim2-tester's own CLI used
to print them (0.5 ships none); the exit status is 1 when any result is ERROR or CRITICAL.
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    url, token = sys.argv[1], sys.argv[2]
    client = Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    scim = SyncSCIMClient(client)
    results = check_server(scim)
    failed = 0
    for result in results:
        where = f" [{result.resource_type}]" if result.resource_type else ""
        print(f"{result.status.name} {result.title}{where}")
        if result.reason:
            print("  ", str(result.reason).replace("\n", "\n   "))
        if result.status in (Status.ERROR, Status.CRITICAL):
            failed += 1
            if result.data is not None:
                print("   data:", str(result.data)[:2000].replace("\n", " "))
    print(f"{len(results)} results, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
