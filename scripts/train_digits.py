"""Train the 8x8-digits score model that ships as ``src/sdekit/zoo/digits.npz``, bit for bit.

    PYTHONPATH=src python scripts/train_digits.py                     # writes src/sdekit/zoo/digits.npz
    PYTHONPATH=src python scripts/train_digits.py --out /tmp/d.npz    # elsewhere; reports whether it matches

With the defaults (seed 0, 40 000 Adam steps of 256 images; see ``sdekit.zoo.training.DEFAULTS``) on one CPU
thread, torch 2.13.0 (CPU wheel) on x86-64, this takes about 13 minutes and writes a file with

    SHA-256  (see sdekit.zoo.WEIGHTS_SHA256 and docs/zoo.md)

Determinism: one torch thread, ``torch.use_deterministic_algorithms(True)``, every draw from generators seeded by
``--seed``, and a weight file written without time stamps (``sdekit.zoo.weights``). Other torch versions or
processors (different vectorised kernels) may round differently and give other bits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from sdekit import zoo
from sdekit.zoo.training import DEFAULTS, train_digits
from sdekit.zoo.weights import save_arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=zoo.WEIGHTS_PATH, help="weight file to write (.npz)")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="denoiser training steps")
    parser.add_argument("--classifier-steps", type=int, default=DEFAULTS["classifier_steps"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--log-every", type=int, default=2000, help="print the loss every that many steps (0: never)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    arrays = train_digits(
        steps=args.steps, classifier_steps=args.classifier_steps, seed=args.seed, log_every=args.log_every
    )
    sha = save_arrays(args.out, arrays)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {time.perf_counter() - t0:.0f} s")
    print(f"sha256 {sha}")
    defaults = (args.steps, args.classifier_steps, args.seed) == (
        DEFAULTS["steps"],
        DEFAULTS["classifier_steps"],
        DEFAULTS["seed"],
    )
    if defaults:
        same = sha == zoo.WEIGHTS_SHA256
        print("matches the shipped weights" if same else f"differs from the shipped weights ({zoo.WEIGHTS_SHA256})")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
