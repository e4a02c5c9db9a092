#!/usr/bin/env python
"""Stage 3: distil the CNN into surrogates, write and print the fidelity table. Usage: RUN"""
import sys

from hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["surrogates", *sys.argv[1:]]))
