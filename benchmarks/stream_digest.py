"""Bit-identity check of every corruption: sha256 of all outputs on a fixed batch.

The random streams and kernels are part of the determinism contract (committed results
and exported datasets depend on them), so a speed change must leave every output bit
unchanged. This script corrupts a fixed batch (crops of scikit-learn's sample photographs,
global indices 1000.., seed 7) with each of the 19 built-in corruptions at severities 1..5,
at 32 px (cifar preset) and at 224 px (imagenet preset), and hashes

- ``uint8``: ``corruptions.apply`` on the uint8 batch (the published-file path), and
- ``float``: ``apply(..., quantize=False)`` on the float batch (float32 bits before the
  8-bit truncation: a stricter check, it sees changes that no level crossing shows yet).

``--save FILE`` writes the digests as JSON; ``--check FILE`` compares and exits 1 listing
the (size, corruption) pairs that changed. Digests are for one machine and torch build
(float kernels may differ across CPU instruction sets); compare runs on the same machine.
Frost uses the procedural texture here whatever is installed (the photographs an installed
imagecorruptions provides are data, not code: they would make the digest depend on the venv).

Each random-stream version has its own file (``--streams``, default 4): stream version 1
is ``benchmarks/stream_digests.json`` (the digests from before versioning, unchanged since),
version N ``benchmarks/stream_digests_vN.json``.

Usage: python benchmarks/stream_digest.py --streams 1 --check benchmarks/stream_digests.json
       python benchmarks/stream_digest.py --streams 2 --check benchmarks/stream_digests_v2.json
       python benchmarks/stream_digest.py --streams 3 --check benchmarks/stream_digests_v3.json
       python benchmarks/stream_digest.py --streams 4 --check benchmarks/stream_digests_v4.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
# measure this checkout's packages, not an installed copy (and not benchmarks/corruptions.py)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402
from _harness import sample_photos  # noqa: E402

import corruptions  # noqa: E402

#: (image side, images in the batch): the 224-px batch is small, glass_blur is slow there
SIZES = ((32, 128), (224, 8))
SEED = 7
FIRST_INDEX = 1000


def digests(sizes: tuple[tuple[int, int], ...] = SIZES, names: list[str] | None = None,
            verbose: bool = False) -> dict[str, dict[str, str]]:
    """{"<size>px/<corruption>": {"uint8": hex, "float": hex}} over severities 1..5."""
    out: dict[str, dict[str, str]] = {}
    for size, n in sizes:
        x8 = sample_photos(n, size)
        xf = x8.float() / 255.0
        idx = torch.arange(FIRST_INDEX, FIRST_INDEX + n)
        for name in names or corruptions.names("all"):
            t0 = time.perf_counter()
            h8, hf = hashlib.sha256(), hashlib.sha256()
            for sev in range(1, 6):
                y8 = corruptions.apply(x8, name, sev, seed=SEED, indices=idx)
                yf = corruptions.apply(xf, name, sev, seed=SEED, indices=idx, quantize=False)
                h8.update(y8.contiguous().numpy().tobytes())
                hf.update(yf.contiguous().numpy().tobytes())
            out[f"{size}px/{name}"] = {"uint8": h8.hexdigest(), "float": hf.hexdigest()}
            if verbose:
                print(f"{size}px/{name:18s} {h8.hexdigest()[:16]} {hf.hexdigest()[:16]} "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Compute the digests; save them or compare them with a saved file."""
    from corruptions import frost as frost_mod

    frost_mod.set_frost_images("procedural")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--save", type=Path, help="write the digests to this JSON file")
    g.add_argument("--check", type=Path, help="compare with this JSON file (exit 1 on change)")
    ap.add_argument("--corruptions", default="all", help="all, a subset name, or a,b,c")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--streams", type=int, default=corruptions.DEFAULT_STREAMS, help="random-stream version")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    corruptions.set_stream_version(args.streams)
    got = digests(names=corruptions.names(args.corruptions), verbose=True)
    total = hashlib.sha256(json.dumps(got, sort_keys=True).encode()).hexdigest()
    print(f"total {total} (torch {torch.__version__}, {args.threads} thread(s), streams v{args.streams})")
    if args.save:
        args.save.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"saved {args.save}")
    if args.check:
        want = json.loads(args.check.read_text())
        bad = [f"{k} ({', '.join(p for p in v if want.get(k, {}).get(p) != v[p])})"
               for k, v in got.items() if want.get(k) != v]
        if bad:
            print("CHANGED: " + "; ".join(bad))
            return 1
        print(f"bit-identical to {args.check} ({len(got)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
