"""An MCP server built with the official Python SDK (FastMCP), for jitgate's tests and
benchmark: read_file, list_directory, write_file and delete_file over one directory, the tools
of the quickstart's `files` resource. Every call it executes is appended to --log as one JSON
line {"tool": ..., "arguments": ...}, so a test counts what really ran and with which
arguments. --stall PATH makes read_file of PATH hang (a call in flight when a test kills the
server). Serves stdio, or streamable HTTP on 127.0.0.1:--http-port (path /mcp).
"""

import argparse
import json
import os
import time
from pathlib import Path

from mcp.server.fastmcp import FastMCP

parser = argparse.ArgumentParser()
parser.add_argument("--root", required=True, help="the directory the tools work in")
parser.add_argument("--log", required=True, help="file that gets one line per executed call")
parser.add_argument("--http-port", type=int, help="serve streamable HTTP on this port instead of stdio")
parser.add_argument("--pid-file", help="write this process's id here (for tests that kill it)")
parser.add_argument("--stall", help="read_file of this path never answers (for tests of calls in flight)")
args = parser.parse_args()

root = Path(args.root).resolve()
if args.pid_file:
    Path(args.pid_file).write_text(str(os.getpid()))

server = FastMCP("files", host="127.0.0.1", port=args.http_port or 8000, log_level="WARNING")


def record(tool: str, **arguments) -> None:
    with open(args.log, "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True, ensure_ascii=False) + "\n")


def inside(path: str) -> Path:
    resolved = (root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(f"{path}: outside {root}")
    return resolved


@server.tool()
def read_file(path: str) -> str:
    """Read a text file."""
    record("read_file", path=path)
    if path == args.stall:
        time.sleep(3600)
    return inside(path).read_text(encoding="utf-8")


@server.tool()
def list_directory(path: str = ".") -> str:
    """List a directory's entries, one per line."""
    record("list_directory", path=path)
    return "\n".join(sorted(p.name for p in inside(path).iterdir()))


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a text file."""
    record("write_file", path=path, content=content)
    inside(path).write_text(content, encoding="utf-8")
    return f"wrote {len(content)} characters to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    record("delete_file", path=path)
    inside(path).unlink()
    return f"deleted {path}"


server.run(transport="streamable-http" if args.http_port else "stdio")
