"""Stage 1 benchmarks, printed side by side (medians over repeats):

realise     intents per minute on the embedded model (small n; model start-up reported apart)
pool        dedup (exact, near, semantic) + Vendi on 50,000 synthetic intents with precomputed embeddings,
            so embedding time is excluded (goal: <= 60 s on 2 cores); Vendi dual vs kernel form
embed       embedding throughput, all-MiniLM-L6-v2 vs the hashing fallback (texts/s)

.venv/bin/python bench/intents_bench.py                 # all three
.venv/bin/python bench/intents_bench.py --skip-model    # no LLM
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ise.dedup import exact_duplicates, near_duplicates, semantic_duplicates
from ise.diversity import vendi_score
from ise.embeddings import HashingEmbedder, MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]

VERBS = ["find", "delete", "compress", "rename", "count", "merge", "back up", "restore", "check", "sort", "convert"]
THINGS = ["log files", "CSV exports", "photos", "invoices", "backups", "reports", "configs", "scripts", "dumps"]
PLACES = ["/srv/data", "~/projects", "/var/log/app", "~/Documents", "/opt/tools", "/backups", "~/thesis", "/mnt/share"]
WORDS = [
    *("please", "quickly", "weekly", "monthly", "older", "newer", "than", "days", "hours", "size", "larger"),
    *("smaller", "owner", "group", "team", "client", "server", "nightly", "archive", "folder", "keep", "only"),
    *("first", "last", "every", "each", "report", "summary", "table", "total", "per", "region"),
]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Intent-like requests; about 3% exact copies (case changed) and 3% near copies (one number changed)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        roll = rng.random()
        if texts and roll < 0.03:
            texts.append(rng.choice(texts).upper())
        elif texts and roll < 0.06:
            texts.append(rng.choice(texts) + f" by day {rng.randint(1, 28)}")
        else:
            filler = " ".join(rng.choices(WORDS, k=rng.randint(8, 20)))
            texts.append(
                f"{rng.choice(VERBS).capitalize()} the {rng.choice(THINGS)} in {rng.choice(PLACES)}/{i % 977} "
                f"{filler} {rng.randint(2, 500)} items by {rng.randint(1, 12)}/{rng.randint(1, 28)}."
            )
    return texts


def synthetic_embeddings(n: int, dim: int = 384, seed: int = 0) -> NDArray[np.float32]:
    """Clustered unit vectors like real intent embeddings (many jobs, each phrased many ways), ~5% paraphrases."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 20, dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), size=n)] + 1.2 * rng.normal(size=(n, dim)).astype(np.float32)
    twins = rng.random(n) < 0.05
    sources = rng.integers(0, n, size=n)
    x[twins] = x[sources[twins]] + 0.3 * rng.normal(size=(int(twins.sum()), dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_pool(n: int, repeats: int, threshold: float) -> None:
    texts = synthetic_texts(n)
    vectors = synthetic_embeddings(n)
    t_exact, exact = timed(lambda: exact_duplicates(texts), repeats)
    t_near, near = timed(lambda: near_duplicates(texts, 0.8), repeats)
    t_sem, sem = timed(lambda: semantic_duplicates(vectors, threshold), repeats)
    t_vendi, vendi = timed(lambda: vendi_score(vectors), repeats)
    small = vectors[:5000]
    t_dual5k, _ = timed(lambda: vendi_score(small, method="dual"), repeats)
    t_kernel5k, _ = timed(lambda: vendi_score(small, method="kernel"), repeats)
    total = t_exact + t_near + t_sem + t_vendi
    assert isinstance(exact, dict)
    assert isinstance(near, dict)
    assert isinstance(sem, dict)
    print(f"\npool: {n:,} synthetic intents, 384-d embeddings precomputed (median of {repeats})")
    print(f"  {'step':<28}{'seconds':>10}{'removed':>10}")
    print(f"  {'exact (normalised text)':<28}{t_exact:>10.2f}{len(exact):>10,}")
    print(f"  {'near (MinHash LSH, J>=0.8)':<28}{t_near:>10.2f}{len(near):>10,}")
    print(f"  {f'semantic (cos>={threshold})':<28}{t_sem:>10.2f}{len(sem):>10,}")
    print(f"  {'Vendi, dual form':<28}{t_vendi:>10.2f}{'':>10}  score {vendi:.1f}")
    print(f"  {'total':<28}{total:>10.2f}{'':>10}  goal <= 60 s: {'met' if total <= 60 else 'MISSED'}")
    print(f"  Vendi at n=5,000: dual {t_dual5k:.3f} s vs kernel {t_kernel5k:.3f} s ({t_kernel5k / t_dual5k:.0f}x)")


def bench_embed(n: int, repeats: int) -> None:
    texts = synthetic_texts(n, seed=1)
    minilm, hashing = MiniLMEmbedder(), HashingEmbedder()
    minilm.embed(texts[:8])  # load the model outside the timing
    t_minilm, _ = timed(lambda: minilm.embed(texts), repeats)
    t_hashing, _ = timed(lambda: hashing.embed(texts), repeats)
    print(f"\nembed: {n} texts (median of {repeats})")
    print(f"  {'all-MiniLM-L6-v2':<20}{n / t_minilm:>10.0f} texts/s")
    print(f"  {'hashing':<20}{n / t_hashing:>10.0f} texts/s   ({t_minilm / t_hashing:.0f}x faster)")
    print(f"  50,000 intents: MiniLM ~{50_000 * t_minilm / n:.0f} s, hashing ~{50_000 * t_hashing / n:.0f} s")


def bench_realise(n: int) -> None:
    from ise.config import load_config
    from ise.sampling import sample_cells
    from ise.stages.intents import realise
    from ise.taxonomy import load_taxonomy

    cfg = load_config([str(ROOT / "configs" / "demo.yaml")])
    taxonomy = load_taxonomy(ROOT / cfg.intents.taxonomy).restricted(cfg.intents.domains)  # as the demo samples
    cells = sample_cells(taxonomy, n, cfg.intents.complexity_priors, cfg.seed)
    start = time.perf_counter()
    llm = cfg.llm_for("intents").build()
    times, failures, flagged = [], 0, 0
    began_first = time.perf_counter()
    try:
        for index, cell in enumerate(cells):
            began = time.perf_counter()
            try:
                intent = realise(cell, taxonomy=taxonomy, llm=llm, max_attempts=cfg.intents.max_attempts)
                flagged += bool(intent.missing)
            except Exception as exc:  # a failure is a data point here, not a crash
                failures += 1
                print(f"  cell {index}: {exc}")
            times.append(time.perf_counter() - began)
    finally:
        llm.close()
    first = times[0] + (began_first - start)
    median = statistics.median(times)
    print(f"\nrealise: {n} intents on the embedded model ({cfg.llm_for('intents').kind})")
    print(f"  first intent incl. server start {first:.1f} s")
    print(f"  median {median:.1f} s/intent -> {60 / median:.1f} intents/min; total {sum(times):.0f} s")
    print(f"  failed {failures}/{n}; flagged (missing a requirement) {flagged}/{n - failures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=50_000, help="synthetic intents for dedup + Vendi")
    parser.add_argument("--embed", type=int, default=512, help="texts for the embedding throughput")
    parser.add_argument("--model-n", type=int, default=5, help="intents realised on the embedded model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    bench_pool(args.pool, args.repeats, MiniLMEmbedder.default_threshold)
    bench_embed(args.embed, args.repeats)
    if not args.skip_model and args.model_n > 0:
        bench_realise(args.model_n)


if __name__ == "__main__":
    main()
