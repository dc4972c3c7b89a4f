"""Poems at a fixed time budget: validation nats/char, the share of poems in form, acrostics.

Trains the ``poems`` preset on a corpus in tensorflow_poems' format (one poem a line,
``title:poem``; its first 90% trains, its last 10% validates, as benchmarks/quality.py splits a
text) until the time budget, and evaluates the best checkpoint on the whole validation split
exactly (one stream, state carried). Then it writes poems from the titles of held-out poems
(each title and ``:`` as the prime, ``--batch`` poems a title, made as one batch) three ways:

- free: nothing but ``stop="\\n"``; the share whose text up to the newline fits the five-character
  quatrain (wujue) exactly is the model's own sense of form;
- form: ``form="wujue"``; every poem must fit (asserted);
- acrostic: ``form="wujue"`` and four random clause heads (``acrostic_after="，。:"``), drawn
  from the characters that begin a clause in the training part; every poem's four clauses must
  begin with them (asserted).

Prints one JSON line.

    python benchmarks/poems.py --data ../shared/data/poems.train.txt --seconds 300 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
from pathlib import Path

import torch

from charseq import Pipeline, PipelineSpec
from charseq.constraints.forms import fits
from charseq.corpus import read_text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_set_option, spec_changes  # noqa: E402
from quality import train_to_budget  # noqa: E402 (the budget and split quality.py uses)

CLAUSE_ENDS = "，。"
TITLE_END = ":"
MAX_NEW = 64  # room for a quatrain (24 characters) and a model that runs on


def clause_heads(poem: str) -> str:
    """The first character of each clause of ``poem`` (clauses end with ``，`` or ``。``)."""
    return "".join(c[0] for c in re.split(f"[{CLAUSE_ENDS}]", poem) if c)


def held_out_titles(val_text: str) -> list[str]:
    """The titles of the whole poems in the validation text (its first line may be a tail)."""
    return [line.split(TITLE_END, 1)[0] for line in val_text.split("\n")[1:] if TITLE_END in line]


def clause_starts(train_text: str) -> list[str]:
    """The letters (not punctuation) that begin a clause in the training text, each once."""
    starts = re.findall(f"[{CLAUSE_ENDS}{TITLE_END}](.)", train_text)
    return sorted({c for c in starts if c.isalpha()})


def write_poems(
    pipe: Pipeline, primes: list[str], batch: int, seed: int, heads: list[str] | None = None, **how
) -> list[str]:
    """``batch`` poems from each prime, made as one batch, each cut at its first newline; with
    ``heads``, the poems of prime ``i`` are acrostics on ``heads[i]``, one head a clause."""
    poems = []
    for i, prime in enumerate(primes):
        if heads:
            how |= {"acrostic": heads[i], "acrostic_after": CLAUSE_ENDS + TITLE_END}
        texts = pipe.generate(prime, MAX_NEW, num_samples=batch, seed=seed + i, **how)
        poems += [text.split("\n", 1)[0] for text in texts]
    return poems


def share(hits: list[bool]) -> float:
    """The share of true values, to four places."""
    return round(sum(hits) / len(hits), 4)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="poems, one a line, title:poem")
    add_set_option(parser, "the preset")
    parser.add_argument("--seconds", type=float, default=300.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--samples", type=int, default=100, help="poems of each kind")
    parser.add_argument("--batch", type=int, default=10, help="poems a title, made as one batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poems and the heads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    changes = spec_changes(args.settings)
    spec = PipelineSpec.from_preset("poems").override(changes)
    trained = train_to_budget(spec, read_text(args.data), args.seconds, "cpu")
    best, splits = trained.best, trained.splits

    # Primes: the held-out titles in order, one a batch; heads: four clause starts a batch.
    train_text = best.tokenizer.decode(splits.train.tolist())
    titles = held_out_titles(best.tokenizer.decode(splits.val.tolist()))
    batches = -(-args.samples // args.batch)
    primes = [titles[i % len(titles)] + TITLE_END for i in range(batches)]
    pool = clause_starts(train_text)
    draw = random.Random(args.seed)
    heads = ["".join(draw.sample(pool, 4)) for _ in primes]
    heads_each = [h for h in heads for _ in range(args.batch)][: args.samples]
    gen_started = time.perf_counter()
    free = write_poems(best, primes, args.batch, args.seed, stop="\n")[: args.samples]
    form = write_poems(best, primes, args.batch, args.seed, form="wujue")[: args.samples]
    acrostic = write_poems(best, primes, args.batch, args.seed, heads, form="wujue")
    acrostic = acrostic[: args.samples]
    gen_wall = time.perf_counter() - gen_started

    result = trained.record(args.data, args.seconds) | {
        "vocab": best.tokenizer.vocab_size,
        "samples": len(free),
        "free_fit_share": share([fits(p, "wujue") for p in free]),
        "form_fit_share": share([fits(p, "wujue") for p in form]),
        "acrostic_heads_share": share(
            [clause_heads(p)[:4] == h for h, p in zip(heads_each, acrostic, strict=True)]
        ),
        "acrostic_fit_share": share([fits(p, "wujue") for p in acrostic]),
        "generate_s": round(gen_wall, 1),
        "examples": {
            "free": primes[0] + free[0],
            "form": primes[0] + form[0],
            "acrostic": f"{heads[0]} {primes[0]}{acrostic[0]}",
        },
        "device": f"{platform.processor() or platform.machine()} (cpu)",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "overrides": args.settings,
        "command": " ".join(["python", "benchmarks/poems.py", *(argv or sys.argv[1:])]),
    }
    print(json.dumps(result, ensure_ascii=False))
    assert result["form_fit_share"] == 1.0, "a poem made with form='wujue' does not fit it"
    assert result["acrostic_heads_share"] == 1.0, "an acrostic poem's clause heads are wrong"
    return result


if __name__ == "__main__":
    main()
