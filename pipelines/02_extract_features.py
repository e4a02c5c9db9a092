#!/usr/bin/env python
"""Stage 2: feature tables (embeddings, CNN probabilities, measured and CNN-probed concepts). Usage: RUN [--data-root DIR]"""
import sys

from hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
