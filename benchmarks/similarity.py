"""Similarity at scale, as a user meets it: the whole ``build`` command's memory, and top-k beside faiss.

    python benchmarks/similarity.py [--sizes 1000 10000 100000] [--top-k 10]

The vocabulary is real English words (the ``english-words`` package's GCIDE list, installed with the
``dev`` extra; nothing is downloaded at run time). Two tables:

1. **The similarity step**, each kind in a fresh child process (its own peak resident memory): scaledet's
   dense and top-k files, and, on the same embeddings, faiss-cpu's exact ``IndexFlatIP`` search for the same
   k (the field's library for exactly this; ``pip install faiss-cpu``). Goal: top-k at least 0.8× the speed
   of faiss.
2. **The whole command**, ``scaledet-labels build --dataset-file words=WORDS.txt --similarity topk``, run as
   a process: wall time, peak RSS, and the phase that raised the peak most (the command prints it). The
   largest size runs once with an empty cache (the first build a user makes) and every size runs with the
   words already encoded (but the similarity computed, not taken from the cache). Goals: ≤ 2 GiB at 100k
   labels, memory growing at most linearly in N.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tables import table

SIMILARITY_CHILD = """
import json, sys, time
import numpy as np
from pathlib import Path
from scaledet.labelspace.similarity import write_similarity
emb = np.ascontiguousarray(np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[2])])
import torch  # the top-k pass runs on torch; its import is start-up, not the step
start = time.perf_counter()
rows = write_similarity(Path(sys.argv[3]), emb, sys.argv[4], None if sys.argv[5] == "none" else int(sys.argv[5]))
# VmHWM is this process's own peak; ru_maxrss would carry over the parent's peak across fork + exec
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "peak_mib": peak_kib / 1024}))
"""

FAISS_CHILD = """
import json, sys, time
import numpy as np
import faiss
emb = np.ascontiguousarray(np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[2])])
start = time.perf_counter()
index = faiss.IndexFlatIP(emb.shape[1])
index.add(emb)
scores, neighbours = index.search(emb, int(sys.argv[3]))
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": int(neighbours.size), "peak_mib": peak_kib / 1024}))
"""

COMMAND_CHILD = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
if done.returncode != 0:
    sys.exit(done.stderr)
print(done.stdout)
print(f"@@ {seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}")
"""


def chosen_words(count: int) -> list[str]:
    from english_words import get_english_words_set

    words = sorted(get_english_words_set(["gcide"], lower=True, alpha=True))
    if len(words) < count:
        raise SystemExit(f"only {len(words)} words available")
    rng = np.random.default_rng(0)
    return [words[i] for i in sorted(rng.choice(len(words), count, replace=False))]


def word_embeddings(words: list[str], work: Path) -> Path:
    from tqdm import tqdm

    from scaledet.labelspace.cache import EmbeddingCache
    from scaledet.labelspace.embed import embed_prompt_names
    from scaledet.labelspace.encoders import MiniLMEncoder

    encoder = MiniLMEncoder()

    def bar(total):
        return tqdm(total=total, desc="encoding words (cached after the first run)", unit="text", file=sys.stderr)

    embeddings, _ = embed_prompt_names(words, ("a photo of a {}.",), encoder,
                                       cache=EmbeddingCache(encoder.identity, encoder.dim), progress=bar)
    path = work / "words.npy"
    np.save(path, embeddings)
    return path


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def faiss_installed() -> bool:
    return subprocess.run([sys.executable, "-c", "import faiss"], capture_output=True).returncode == 0


def step_rows(embeddings: Path, sizes: list[int], top_k: int, dense_up_to: int, work: Path) -> list[tuple]:
    with_faiss = faiss_installed()
    rows = []
    for n in sizes:
        for kind in (["dense", "topk"] if n <= dense_up_to else ["topk"]):
            out = work / f"sim-{kind}-{n}.parquet"
            result = child(SIMILARITY_CHILD, str(embeddings), str(n), str(out), kind,
                           str(top_k) if kind == "topk" else "none")
            faiss_cells = ("", "")
            if kind == "topk":
                if with_faiss:
                    reference = child(FAISS_CHILD, str(embeddings), str(n), str(top_k))
                    faiss_cells = (f"{reference['seconds']:.1f} s / {reference['peak_mib']:.0f} MiB",
                                   f"{reference['seconds'] / result['seconds']:.2f}×")
                else:
                    faiss_cells = ("faiss-cpu not installed", "")
            rows.append((f"{n:,}", kind, f"{result['seconds']:.1f} s", f"{result['rows']:,}",
                         f"{out.stat().st_size / 2**20:.0f} MiB", f"{result['peak_mib']:.0f} MiB", *faiss_cells))
            out.unlink()
    return rows


def command_row(words_file: Path, n: int, top_k: int, cache: Path, label: str, work: Path) -> tuple:
    script = Path(sys.executable).with_name("scaledet-labels")
    out = work / f"build-{n}-{label}"
    env = {**os.environ, "SCALEDET_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", COMMAND_CHILD, str(script), "build", "--dataset-file",
                           f"words={words_file}", "--similarity", "topk", "--top-k", str(top_k), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    text = " ".join(done.stdout.split())
    seconds, peak = map(float, re.search(r"@@ (\S+) (\S+)", text).groups())
    phase = re.search(r"raised most in phase: (\w+)", text).group(1)
    times = dict((name, float(value)) for name, value in re.findall(r"(\w+) ([\d.]+) s[,;]", text))
    return (f"{n:,}", label, f"{seconds:.1f} s", f"{peak:,.0f} MiB", phase, f"{times.get('embed', 0):.1f} s",
            f"{times.get('similarity', 0):.1f} s")


def warm_cache(root: Path, fresh: Path) -> Path:
    """A cache root holding the encoded words but no similarity files: a warm build then encodes nothing
    yet still computes its top-k, which is the part whose memory must grow at most linearly."""
    fresh.mkdir(parents=True)
    (fresh / "embeddings").symlink_to((root / "embeddings").resolve(), target_is_directory=True)
    return fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--dense-up-to", type=int, default=10000, help="also time dense for N up to this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scaledet-simbench-"))
    words = chosen_words(max(args.sizes))
    embeddings = word_embeddings(words, work)

    rows = step_rows(embeddings, args.sizes, args.top_k, args.dense_up_to, work)
    print(f"the similarity step: MiniLM embeddings of real words, top-k = {args.top_k}, one process per row")
    print(table(rows, ("labels", "kind", "time", "pairs", "file", "peak RSS", "faiss IndexFlatIP (time / peak)",
                       "speed vs faiss")))

    from scaledet.labelspace.io.cache_dir import cache_root

    command_rows = []
    for n in sorted(args.sizes):
        words_file = work / f"words-{n}.txt"
        words_file.write_text("\n".join(words[:n]) + "\n", encoding="utf-8")
        if n == max(args.sizes):
            command_rows.append(command_row(words_file, n, args.top_k, work / "cache-cold", "cold cache", work))
        command_rows.append(command_row(words_file, n, args.top_k, warm_cache(cache_root(), work / f"cache-warm-{n}"),
                                        "warm cache", work))
    print()
    print("the whole command: scaledet-labels build --dataset-file words=WORDS.txt --similarity topk, as a process "
          "(goal ≤ 2 GiB at 100k)")
    print(table(command_rows, ("labels", "cache", "wall", "peak RSS", "peak raised most in", "encode", "similarity")))
    warm = [(int(r[0].replace(",", "")), float(r[3].split()[0].replace(",", ""))) for r in command_rows if r[1] == "warm cache"]
    if len(warm) >= 2 and warm[-1][0] > warm[0][0]:
        slope = (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0]) * 10_000
        print(f"growth (warm): {slope:.1f} MiB per 10k labels between {warm[0][0]:,} and {warm[-1][0]:,} labels")


if __name__ == "__main__":
    main()
