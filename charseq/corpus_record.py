"""What a checkpoint records about its corpus, and the rule for reading that corpus again.

A manifest's ``corpus.sources`` are absolute paths, and a checkpoint may come from someone else:
``["/"]`` or ``["/etc/passwd"]`` are as easy to write as the real ones. So evaluating or
resuming a run never reads the paths its manifest names on the manifest's word alone. It takes
the corpus from the run's own cache (``RUN/cache``, where training encoded it, found by the
content hash the manifest records), and otherwise asks the user to pass the data, naming the
recorded paths: a user who trusts them passes them, and then they are the user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charseq.checkpoint import MANIFEST_FILE, CheckpointError
from charseq.checkpoint.state import NULL, TEXT, TEXTS, Field, check_fields
from charseq.corpus import STDIN, CorpusError, EncodedCorpus, cached_corpus
from charseq.corpus.arguments import NORMALIZATIONS
from charseq.interfaces import Tokenizer

_NORMALIZE = Field("null, 'NFC' or 'NFKC'", lambda v: v in (None, *NORMALIZATIONS))
_KINDS = {
    "files": {
        "sources": TEXTS,
        "include": TEXTS | NULL,
        "encoding": TEXT | NULL,
        "normalize": _NORMALIZE,
        "hash": TEXT,
    },
    "text": {"hash": TEXT},
}


def recorded_corpus(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``corpus`` table (``{}`` if it has none), its fields checked."""
    if "corpus" not in manifest:
        return {}
    file = path / MANIFEST_FILE
    recorded = check_fields(file, "corpus", manifest["corpus"], {"kind": TEXT})
    if recorded["kind"] not in _KINDS:
        raise CheckpointError(
            f"{file}: corpus.kind is {recorded['kind']!r}; expected 'files' or 'text'"
        )
    return check_fields(file, "corpus", recorded, _KINDS[recorded["kind"]])


def from_run_cache(
    cache: Path, tokenizer: Tokenizer, recorded: dict[str, Any], manifest: dict[str, Any]
) -> EncodedCorpus | None:
    """The recorded corpus as the run's cache holds it, without reading its sources; ``None``
    if the cache (a directory, not a link) has no entry for it."""
    try:
        return cached_corpus(
            cache,
            tokenizer,
            recorded["hash"],
            encoding=recorded.get("encoding") or "utf-8",
            normalize=recorded["normalize"],
            state=manifest.get("tokenizer"),  # as keyed in training, whatever the policy now
        )
    except CorpusError as error:
        raise CheckpointError(str(error), argument=error.argument) from None


class UnreadSourcesError(CheckpointError):
    """A run's corpus would have to be read from the paths its manifest names: pass it."""


def unread_sources(path: Path, sources: list[str]) -> UnreadSourcesError:
    """The error for a run whose recorded sources would have to be read: which paths they are
    and how to pass them."""
    files = [source for source in sources if source != STDIN]
    if len(sources) <= 4:
        python = f"files={sources!r}"
    else:
        python = "files=[...] (each of them, or their directory)"
    listed = ", ".join(sources[:4]) + (f" and {len(sources) - 4} more" if len(sources) > 4 else "")
    cache = path.parent / "cache"
    they, them = ("they", "them") if len(files) > 1 else ("it", "it")
    return UnreadSourcesError(
        f"{path} was trained on {listed}, recorded in its manifest, and its run has no corpus "
        f"cache to take it from ({cache}). charseq does not read the paths a checkpoint names "
        f"on its word alone ({they} could name any file on this machine): if you trust {them}, "
        f"pass the data yourself: {python}",
        argument="files",
    )
