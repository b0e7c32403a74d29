#!/usr/bin/env python3
"""Checks that the workspace's `rust-version` is the true minimum: the highest `rust-version`
of every package the workspace builds on Linux (normal, build and dev dependencies; the loom
model, built only under `--cfg loom`, is left out). Exit 0 when they agree, 1 when they do not
(naming the package that needs more), 2 when cargo cannot answer.

usage: scripts/check-msrv.py   (at the repository root)
"""
import json
import re
import subprocess
import sys


def version(v):
    """`"1.85"` as `(1, 85, 0)`."""
    nums = [int(x) for x in re.findall(r"\d+", v or "0")][:3]
    return tuple(nums + [0] * (3 - len(nums)))


def main():
    try:
        tree = subprocess.run(
            ["cargo", "tree", "--workspace", "--offline", "-e", "normal,dev,build",
             "--target", "x86_64-unknown-linux-gnu", "--prefix", "none", "--no-dedupe"],
            check=True, capture_output=True, text=True).stdout
        meta = json.loads(subprocess.run(
            ["cargo", "metadata", "--offline", "--format-version", "1"],
            check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as e:
        print(f"error: cargo could not list the dependencies: {e}", file=sys.stderr)
        return 2
    used = set()
    for line in tree.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            used.add((parts[0], parts[1].lstrip("v")))
    workspace = {p["id"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    declared = {p["rust_version"] for p in meta["packages"] if p["id"] in workspace}
    if len(declared) != 1:
        print(f"error: the workspace members declare rust-version {sorted(declared)}", file=sys.stderr)
        return 1
    declared = declared.pop()
    needed = max(
        ((version(p.get("rust_version")), p["name"], p["version"], p.get("rust_version"))
         for p in meta["packages"]
         if (p["name"], p["version"]) in used and p["id"] not in workspace),
        default=((0, 0, 0), "-", "-", "0"),
    )
    if version(declared) != needed[0]:
        print(f"rust-version is {declared}, but {needed[1]} {needed[2]} needs {needed[3]}: "
              f"set rust-version = \"{needed[3]}\" in Cargo.toml (and the README)")
        return 1
    print(f"rust-version {declared} is the true minimum ({needed[1]} {needed[2]} needs it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
