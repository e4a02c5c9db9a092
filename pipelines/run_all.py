#!/usr/bin/env python
"""Every stage on one preset, in order. Same flags as `hybrid train` (e.g. --config, --run, --data-root).

Stages so far: 01 train backbone (+ evaluation). Later stages append here as they land.
"""
import sys

from hybrid.cli import main

STAGES = [["train"]]

if __name__ == "__main__":
    for stage in STAGES:
        code = main([*stage, *sys.argv[1:]])
        if code:
            sys.exit(code)
