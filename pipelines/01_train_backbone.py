#!/usr/bin/env python
"""Stage 1: train the CNN backbone and evaluate it. Same flags as `hybrid train`."""
import sys

from hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
