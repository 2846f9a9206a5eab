"""Decontamination: recall on planted benchmark items, false positives, tokens/s.

Benchmarks: GSM8K test (question) and HumanEval (prompt + canonical solution). Planted
rows, one per item and kind: verbatim; whitespace and case changed; embedded between two
clean passages; 10% and 25% of words changed (equal parts substitution, deletion and
insertion of a random vocabulary word: the targets' definition) and, harder, 10% and 25%
of words substituted. Clean rows: Python language reference passages,
stdlib function sources and GSM8K *train* questions. Speed is the scan of the whole
corpus (clean + planted) once the index is built, ours against a plain Python set of
lower-cased word 13-grams (which is also scored, for comparison).

    python benchmarks/decontam_bench.py --gsm8k-dir PATH/TO/gsm8k --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import random
import time
from pathlib import Path

from timing import interleaved
from word_edits import change_words

from synth_lib.curation.decontam import BenchmarkIndex, DecontamConfig, file_items, humaneval_items

CODE_MODULES = (
    "json", "textwrap", "statistics", "heapq", "bisect", "fractions", "string", "shlex",
    "difflib", "functools", "collections", "random", "calendar", "csv", "pathlib", "ast",
    "argparse", "email.utils", "html", "urllib.parse", "colorsys", "fnmatch", "glob",
)  # fmt: skip
KINDS = (
    "verbatim",
    "reformatted",
    "embedded",
    "changed_10",
    "changed_25",
    "substituted_10",
    "substituted_25",
)


def clean_corpus(gsm8k_train: Path) -> list[str]:
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        words = topics[name].split()
        out += [" ".join(words[i : i + 200]) for i in range(0, len(words), 200)]
    for module_name in CODE_MODULES:
        module = importlib.import_module(module_name)
        for _, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                try:
                    out.append(inspect.getsource(obj))
                except (OSError, TypeError):
                    continue
    with gsm8k_train.open() as handle:
        out += [json.loads(line)["question"] for line in handle]
    return [t for t in out if len(t.split()) >= 8]


def reformat(text: str, rng: random.Random) -> str:
    """Random case per word and random whitespace runs (spaces, tabs, newlines)."""
    styles = (str.upper, str.lower, str.title, str.swapcase)
    words = [rng.choice(styles)(w) for w in text.split()]
    return "".join(w + rng.choice((" ", "  ", "\t", "\n", " \n ")) for w in words)


def planted(items, clean: list[str], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    vocab = sorted({w for t in clean[:500] for w in t.split()})
    prose = [t for t in clean if len(t.split()) >= 100]
    return {
        "verbatim": [i.text for i in items],
        "reformatted": [reformat(i.text, rng) for i in items],
        "embedded": [f"{rng.choice(prose)}\n\n{i.text}\n\n{rng.choice(prose)}" for i in items],
        "changed_10": [change_words(i.text, 0.10, vocab, rng) for i in items],
        "changed_25": [change_words(i.text, 0.25, vocab, rng) for i in items],
        "substituted_10": [change_words(i.text, 0.10, vocab, rng, True) for i in items],
        "substituted_25": [change_words(i.text, 0.25, vocab, rng, True) for i in items],
    }


class NgramSetBaseline:
    """The plain way: a Python set of lower-cased whitespace-split word n-gram tuples."""

    def __init__(self, texts: list[str], n: int = 13):
        self.n = n
        self.grams = set()
        for text in texts:
            w = text.lower().split()
            self.grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    def scan(self, texts: list[str]) -> list[bool]:
        n, grams = self.n, self.grams
        out = []
        for text in texts:
            w = text.lower().split()
            out.append(any(tuple(w[i : i + n]) in grams for i in range(len(w) - n + 1)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("SYNTH_GSM8K_DIR", "../shared/data/gsm8k")
    parser.add_argument("--gsm8k-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--preset", choices=("gpt3", "llama3"), default="gpt3")
    parser.add_argument(
        "--containment", type=float, default=None, help="override the preset's containment"
    )
    args = parser.parse_args()

    items = file_items(args.gsm8k_dir / "test.jsonl", "gsm8k-test") + humaneval_items()
    clean = clean_corpus(args.gsm8k_dir / "train.jsonl")
    plants = planted(items, clean, args.seed)
    corpus = clean + [t for kind in KINDS for t in plants[kind]]
    tokens = sum(len(t.split()) for t in corpus)
    overrides = {} if args.containment is None else {"containment": args.containment}
    config = DecontamConfig.preset(args.preset, **overrides)
    print(
        f"{len(items)} benchmark items, {len(clean)} clean rows, {len(corpus)} rows / "
        f"{tokens:,} tokens scanned, {config}"
    )

    start = time.perf_counter()
    index = BenchmarkIndex(items, config)
    print(f"ours: index built in {time.perf_counter() - start:.3f}s")
    baseline = NgramSetBaseline([i.text for i in items], config.ngram)
    runs = interleaved(
        {"ours": lambda: index.scan(corpus), "baseline": lambda: baseline.scan(corpus)},
        args.repeats,
    )
    ours_out, ours_s = runs["ours"]
    base_out, base_s = runs["baseline"]

    def report(name: str, flags: list[bool], seconds: float, right_item: list[bool] | None):
        at = len(clean)
        fp = sum(flags[:at])
        print(
            f"{name}: {tokens / seconds:,.0f} tokens/s (median {seconds:.3f}s); "
            f"false positives {fp}/{at} = {fp / at:.3%}"
        )
        for kind in KINDS:
            n = len(plants[kind])
            hit = flags[at : at + n]
            extra = ""
            if right_item is not None:
                extra = f", right item {sum(right_item[at : at + n]) / n:.4f}"
            print(f"   recall {kind:<12} {sum(hit) / n:.4f}{extra}")
            at += n

    expected = [None] * len(clean) + [i.item_id for _ in KINDS for i in items]
    ours_flags = [m is not None for m in ours_out]
    right = [m is not None and m.item_id == e for m, e in zip(ours_out, expected, strict=True)]
    report("ours", ours_flags, ours_s, right)
    report(f"{config.ngram}-gram set", base_out, base_s, None)
    print(f"speed ratio ours/baseline: {base_s / ours_s:.2f}x")
    false_pos = [(corpus[i][:90], m.reason) for i, m in enumerate(ours_out[: len(clean)]) if m]
    for text, reason in false_pos:
        print(f"   flagged clean row: {reason} | {text!r}")


if __name__ == "__main__":
    main()
