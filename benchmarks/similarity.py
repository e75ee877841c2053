"""Similarity at scale: blockwise top-k vs dense, N = 1k, 10k, 100k labels of real words.

    python benchmarks/similarity.py [--sizes 1000 10000 100000] [--top-k 64]

The vocabulary is real English words (the ``english-words`` package's GCIDE list, installed with the
``dev`` extra; nothing is downloaded at run time), encoded once with MiniLM through the embedding cache (the
first run encodes up to 100k words, several minutes; later runs load them from the cache). Each
similarity file is then written by a fresh child process so that its peak resident memory is its own.
Goals: ≤ 2 GiB peak at 100k labels with top-k, time growing about N² / block.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, time
import numpy as np
from pathlib import Path
from scaledet.labelspace.similarity import write_similarity
emb = np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[2])]
emb = np.ascontiguousarray(emb)
start = time.perf_counter()
rows = write_similarity(Path(sys.argv[3]), emb, sys.argv[4], None if sys.argv[5] == "none" else int(sys.argv[5]))
# VmHWM is this process's own peak; ru_maxrss would carry over the parent's peak across fork + exec
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "peak_mib": peak_kib / 1024}))
"""


def word_embeddings(count: int, work: Path) -> Path:
    from english_words import get_english_words_set

    from scaledet.labelspace.cache import EmbeddingCache
    from scaledet.labelspace.embed import embed_prompt_names
    from scaledet.labelspace.encoders import MiniLMEncoder

    words = sorted(get_english_words_set(["gcide"], lower=True, alpha=True))
    if len(words) < count:
        raise SystemExit(f"only {len(words)} words available")
    rng = np.random.default_rng(0)
    chosen = [words[i] for i in sorted(rng.choice(len(words), count, replace=False))]
    encoder = MiniLMEncoder()
    from tqdm import tqdm

    def bar(total):
        return tqdm(total=total, desc="encoding words (cached after the first run)", unit="text", file=sys.stderr)

    embeddings, stats = embed_prompt_names(chosen, ("a photo of a {}.",), encoder,
                                           cache=EmbeddingCache(encoder.identity, encoder.dim), progress=bar)
    path = work / "words.npy"
    np.save(path, embeddings)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--dense-up-to", type=int, default=10000, help="also time dense for N up to this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scaledet-simbench-"))
    embeddings = word_embeddings(max(args.sizes), work)
    rows = []
    for n in args.sizes:
        for kind in (["dense", "topk"] if n <= args.dense_up_to else ["topk"]):
            out = work / f"sim-{kind}-{n}.parquet"
            done = subprocess.run([sys.executable, "-c", CHILD, str(embeddings), str(n), str(out), kind,
                                   str(args.top_k) if kind == "topk" else "none"],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((f"{n:,}", kind, f"{result['seconds']:.1f} s", f"{result['rows']:,}",
                         f"{out.stat().st_size / 2**20:.0f} MiB", f"{result['peak_mib']:.0f} MiB"))
            out.unlink()
    print(f"label-label similarity: MiniLM embeddings of real words, top-k = {args.top_k}, blocks of 1024 rows")
    header = ("labels", "kind", "time", "pairs", "file", "peak RSS")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
