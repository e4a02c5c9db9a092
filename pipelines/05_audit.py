#!/usr/bin/env python
"""Stage 5: shortcut audit, planted-stamp probe, lesion-level leakage, skin-tone and subgroup
metrics. Usage: RUN [--stamp ruler|dot|patch] [--data-root DIR]"""
import sys

from hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
