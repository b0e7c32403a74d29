#!/usr/bin/env python3
"""The import graph of load-tester/src between its top-level folders, as a Mermaid diagram.

usage: scripts/import-graph.py   (run at the repository root; prints Markdown)

Every `crate::<folder>` path in a file of folder A (comments stripped) is an arrow A -> folder.
load-tester/tests/layers.rs checks the same arrows against the allowed layering; this script
draws them, so docs/architecture.md can show the picture the test enforces.
"""
import os
import re
import sys

SRC = os.path.join("load-tester", "src")


def folder_of(path):
    first = os.path.relpath(path, SRC).split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def main():
    arrows = set()
    for root, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            here = folder_of(path)
            if here in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as f:
                text = "\n".join(line.split("//")[0] for line in f)
            for target in re.findall(r"\bcrate::(\w+)", text):
                if target != here:
                    arrows.add((here, target))
    print("```mermaid")
    print("graph TD")
    for a, b in sorted(arrows):
        print(f"    {a} --> {b}")
    print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
