"""An MCP client built with the official Python SDK (ClientSession over stdio_client), for
jitgate's tests and benchmark. It starts the MCP server given after `--` (for the tests,
`jitgate mcp proxy ... -- upstream`), initializes, runs the steps of the JSON script --script
(a list), and prints one JSON line per step as soon as it is done:
  {"list_tools": true}                      -> {"tools": [names]}
  {"call": T, "arguments": {...}}           -> {"isError": bool, "text": "...", "progress": [...]}
                                               or {"error": "..."} for a JSON-RPC error
  {"call": T, ..., "cancel_after": S}       -> unanswered after S seconds, the call is
                                               cancelled (notifications/cancelled):
                                               {"cancelled": true}
  {"bench": T, "arguments": {...}, "n": N}  -> N calls one after another:
                                               {"p50_ms": .., "p99_ms": .., "mean_ms": ..}
Every line carries "step" (its index) and "seconds" (how long it took). The server runs with
this process's whole environment (JITGATE_URL, JITGATE_TOKEN).
"""

import argparse
import json
import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

parser = argparse.ArgumentParser()
parser.add_argument("--script", required=True, help="JSON list of steps")
parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server's command and arguments")
args = parser.parse_args()
command = args.command[1:] if args.command[:1] == ["--"] else args.command
steps = json.loads(args.script)


def texts(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call(session: ClientSession, step: dict, out: dict) -> None:
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "message": message})

    try:
        result = await session.call_tool(step["call"], step.get("arguments", {}), progress_callback=on_progress)
        out["isError"] = bool(result.isError)
        out["text"] = texts(result)
    except Exception as e:  # a JSON-RPC error answer (McpError) or a lost connection
        out["error"] = str(e)
    out["progress"] = progress


async def run() -> None:
    server = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for index, step in enumerate(steps):
                started = time.monotonic()
                out = {"step": index}
                if "list_tools" in step:
                    listed = await session.list_tools()
                    out["tools"] = [t.name for t in listed.tools]
                elif "bench" in step:
                    took = []
                    for _ in range(int(step.get("n", 1000))):
                        t0 = time.perf_counter()
                        result = await session.call_tool(step["bench"], step.get("arguments", {}))
                        took.append((time.perf_counter() - t0) * 1000)
                        if result.isError:
                            out["error"] = texts(result)
                            break
                    took.sort()
                    out["calls"] = len(took)
                    out["p50_ms"] = round(took[len(took) // 2], 3)
                    out["p99_ms"] = round(took[min(len(took) - 1, int(len(took) * 0.99))], 3)
                    out["mean_ms"] = round(sum(took) / len(took), 3)
                elif "cancel_after" in step:
                    # The SDK stops waiting when the scope ends but tells the server nothing;
                    # an MCP client cancels with notifications/cancelled naming the request's
                    # id, the id the session gives its next request.
                    request_id = session._request_id
                    with anyio.move_on_after(float(step["cancel_after"])) as scope:
                        await call(session, step, out)
                    if scope.cancelled_caught:
                        await session.send_notification(
                            types.ClientNotification(
                                types.CancelledNotification(
                                    params=types.CancelledNotificationParams(requestId=request_id, reason="test")
                                )
                            )
                        )
                    out["cancelled"] = scope.cancelled_caught
                elif "call" in step:
                    await call(session, step, out)
                elif "sleep" in step:
                    await anyio.sleep(float(step["sleep"]))
                out["seconds"] = round(time.monotonic() - started, 3)
                print(json.dumps(out), flush=True)


try:
    anyio.run(run)
except Exception as e:  # the server went away mid-script: say so as a line too
    print(json.dumps({"fatal": repr(e)}), flush=True)
    sys.exit(1)
