#!/usr/bin/env python
"""Stage 4: faithfulness and SHAP-versus-saliency tables on a fixed test sample, then the gallery
of side-by-side explanations. Usage: RUN [--n 200] [--data-root DIR]"""
import sys

from hybrid.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    code = main(["faithfulness", *args])
    gallery = [a for i, a in enumerate(args) if a != "--n" and (i == 0 or args[i - 1] != "--n")]
    sys.exit(code or main(["explain", *gallery, "--gallery"]))
