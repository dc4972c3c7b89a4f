"""Corpus input: finding files, streaming and decoding them, the cached id array, splits."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
import unicodedata
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charseq import corpus as corpus_module
from charseq.builtins.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    UnknownCharacterError,
    WordTokenizer,
)
from charseq.corpus import (
    BinaryFileError,
    CorpusDecodeError,
    CorpusError,
    CorpusTooSmallError,
    EmptyCorpusError,
    NoTextFilesError,
    SourceNotFoundError,
    find_sources,
    ids_dtype,
    iter_text,
    prepare_corpus,
    python_source_corpus,
    python_source_files,
    read_text,
)
from charseq.errors import CharseqError

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind\n"


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def fake_stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# -- errors are charseq errors ------------------------------------------------------------------


def test_every_corpus_error_is_a_charseq_error():
    for cls in (
        CorpusError,
        SourceNotFoundError,
        NoTextFilesError,
        BinaryFileError,
        CorpusDecodeError,
        EmptyCorpusError,
        CorpusTooSmallError,
    ):
        assert issubclass(cls, CharseqError)


# -- find_sources -------------------------------------------------------------------------------


def test_find_sources_searches_directories_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "books"
    write(root / "b.txt", "b")
    write(root / "a.txt", "a")
    write(root / "sub" / "c.txt", "c")
    write(root / "sub" / "deeper" / "d.md", "d")
    write(root / "notes.rst", "n")
    write(root / ".hidden.txt", "h")
    write(root / ".git" / "e.txt", "e")
    found = find_sources([root], include=("*.txt", "*.md"))
    assert [p.relative_to(root).as_posix() for p in found] == [
        "a.txt",
        "b.txt",
        "sub/c.txt",
        "sub/deeper/d.md",
    ]
    every = find_sources(root)  # a single path, every (non-hidden) file
    assert [p.name for p in every] == ["a.txt", "b.txt", "notes.rst", "c.txt", "d.md"]
    assert [p.name for p in find_sources([root], include="sub/*.txt")] == ["c.txt"]


def test_find_sources_keeps_argument_order_and_reads_a_file_once(tmp_path):
    one = write(tmp_path / "one.txt", "1")
    two = write(tmp_path / "dir" / "two.txt", "2")
    found = find_sources([one, tmp_path / "dir", "-", two, one])
    assert found == [one, two, "-"]


def test_find_sources_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match="missing.txt: no such file"):
        find_sources([tmp_path / "missing.txt"])
    write(tmp_path / "d" / "a.py", "x = 1")
    with pytest.raises(NoTextFilesError, match=r"no text files matching '\*\.txt'"):
        find_sources([tmp_path / "d"], include="*.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoTextFilesError, match="empty"):
        find_sources([tmp_path / "empty"])
    with pytest.raises(NoTextFilesError, match="no corpus given"):
        find_sources([])
    with pytest.raises(CorpusError, match="only once"):
        find_sources(["-", "-"])


def test_a_directory_skips_binary_files_and_one_of_only_binary_files_is_refused(tmp_path):
    write(tmp_path / "d" / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(tmp_path / "d" / "text.txt", TEXT)
    with pytest.warns(UserWarning, match=r"skipped 1 binary file\(s\): image.png"):
        assert [p.name for p in find_sources([tmp_path / "d"])] == ["text.txt"]
    write(tmp_path / "bin" / "a.bin", b"\x00\x01\x02")
    with pytest.raises(NoTextFilesError, match=r"no text files .*skipped 1 binary file"):
        find_sources([tmp_path / "bin"])
    # NUL bytes are normal in UTF-16: nothing is skipped then
    write(tmp_path / "u16" / "a.txt", "hi".encode("utf-16"))
    assert len(find_sources([tmp_path / "u16"], encoding="utf-16")) == 1


# -- iter_text ----------------------------------------------------------------------------------


def test_iter_text_decodes_characters_split_between_reads(tmp_path):
    text = "é猫😀 a\nb ü\n" * 5
    path = write(tmp_path / "u.txt", text)
    for chunk in (1, 2, 3, 5, 64):
        pieces = list(iter_text([path], chunk_chars=chunk))
        assert "".join(pieces) == text
        assert all(p for p in pieces)


def test_iter_text_concatenates_sources_and_cuts_only_before_whitespace(tmp_path):
    a = write(tmp_path / "a.txt", TEXT)
    b = write(tmp_path / "b.txt", "  second   file\n\n\nends")
    pieces = list(iter_text([a, b], chunk_chars=8))
    assert "".join(pieces) == TEXT + "  second   file\n\n\nends"
    for piece, after in zip(pieces, pieces[1:], strict=False):
        assert after[0].isspace() and not piece[-1].isspace()


def test_iter_text_cuts_a_text_without_whitespace_with_a_warning(tmp_path):
    path = write(tmp_path / "w.txt", "x" * 500)
    with pytest.warns(UserWarning, match="without whitespace"):
        pieces = list(iter_text([path], chunk_chars=4))
    assert "".join(pieces) == "x" * 500
    assert max(map(len, pieces)) <= 16 * 4 + 4


pieces_of_text = st.lists(
    st.sampled_from(
        ["e", "\u0301", "\u0308", "A", "\u030a", " ", "\n", "  ", "ﬁ", "①", "Å", "한", "\u1100"]
        + ["\u1161", "\u11a8", "x", "\u00a0", "\t", "don't", ".", "\r\n"]
    ),
    max_size=40,
).map("".join)


@given(text=pieces_of_text, chunk=st.integers(1, 12), form=st.sampled_from([None, "NFC", "NFKC"]))
def test_normalising_piece_by_piece_equals_normalising_the_whole(
    tmp_path_factory, text, chunk, form
):
    path = tmp_path_factory.mktemp("n") / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        joined = "".join(iter_text([path], normalize=form, chunk_chars=chunk))
    if not caught:  # only a long stretch without whitespace is cut anywhere (and warns)
        assert joined == (unicodedata.normalize(form, text) if form else text)


def test_normalisation_nfc_and_nfkc(tmp_path):
    decomposed = "Cafe\u0301 \ufb01le \u2460\n"  # e + combining acute, the fi ligature, circled 1
    path = write(tmp_path / "n.txt", decomposed)
    assert read_text(path) == decomposed
    assert read_text(path, normalize="NFC") == "Caf\u00e9 \ufb01le \u2460\n"
    assert read_text(path, normalize="nfkc") == "Caf\u00e9 file 1\n"
    with pytest.raises(CorpusError, match="normalize must be None, 'NFC' or 'NFKC'"):
        read_text(path, normalize="NFX")


def test_binary_file_is_named_with_the_offset_and_the_remedies(tmp_path):
    path = write(tmp_path / "model.bin", b"abc\x00\x01\x02")
    with pytest.raises(BinaryFileError) as info:
        list(iter_text([path]))
    message = str(info.value)
    assert "model.bin" in message and "byte offset 3" in message
    assert "encoding=" in message and "--encoding" not in message
    assert "'byte' tokenizer" in message and info.value.argument == "encoding"
    assert info.value.offset == 3 and info.value.path.endswith("model.bin")
    # a NUL byte past the first few kilobytes is text with a NUL in it, not a binary file
    late = write(tmp_path / "late.txt", b"a" * 9000 + b"\x00")
    assert len("".join(iter_text([late], chunk_chars=1000))) == 9001


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 10, 11, 12, 4096])
def test_decode_error_names_the_file_and_the_absolute_byte_offset(tmp_path, chunk):
    path = write(tmp_path / "latin.txt", b"0123456789\xc3(rest" + b" more" * 5)
    with pytest.raises(CorpusDecodeError) as info:
        list(iter_text([path], chunk_chars=chunk))
    error = info.value
    assert error.offset == 10 and error.path.endswith("latin.txt") and error.encoding == "utf-8"
    message = str(error)
    assert "latin.txt" in message and "byte offset 10" in message
    assert "encoding=" in message and "--encoding" not in message
    assert "'byte' tokenizer" in message and info.value.argument == "encoding"


def test_decode_error_for_a_character_cut_off_at_the_end(tmp_path):
    path = write(tmp_path / "cut.txt", "abc €".encode()[:-1])
    with pytest.raises(CorpusDecodeError, match="byte offset 4"):
        list(iter_text([path], chunk_chars=2))


def test_encoding_option(tmp_path):
    path = write(tmp_path / "latin.txt", "café, naïve\n".encode("latin-1"))
    with pytest.raises(CorpusDecodeError, match="byte offset 3"):
        read_text(path)
    assert read_text(path, encoding="latin-1") == "café, naïve\n"
    utf16 = write(tmp_path / "u16.txt", "hé 猫\n".encode("utf-16"))
    assert read_text(utf16, encoding="utf-16") == "hé 猫\n"
    with pytest.raises(CorpusError, match="unknown encoding 'nope'"):
        read_text(path, encoding="nope")
    for codec in ("rot13", "base64", "zlib"):  # codecs, but not from bytes to text
        with pytest.raises(CorpusError, match=f"'{codec}' is not a text encoding"):
            read_text(path, encoding=codec)
    no_bom = write(tmp_path / "u16le.txt", "hi".encode("utf-16-le"))
    with pytest.raises(CorpusDecodeError, match="cannot be read as utf-16 .*'utf-16-le'"):
        read_text(no_bom, encoding="utf-16")
    assert read_text(no_bom, encoding="utf-16-le") == "hi"


def test_read_text_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match="no such file"):
        read_text(tmp_path / "missing.txt")
    write(tmp_path / "d" / "a.txt", "one ")
    write(tmp_path / "d" / "b.txt", "two")
    assert read_text(tmp_path / "d") == "one two"


def test_iter_text_reads_standard_input(monkeypatch):
    fake_stdin(monkeypatch, "from stdin: é\n".encode())
    assert "".join(iter_text("-")) == "from stdin: é\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a text-only stdin"))
    assert "".join(iter_text(["-"])) == "a text-only stdin"


def test_standard_library_corpus():
    files = python_source_files()
    assert files and all(p.suffix == ".py" and p.is_file() for p in files)
    assert [p.name for p in files] == [
        n for n in corpus_module.STDLIB_MODULES if n in {p.name for p in files}
    ]
    text = python_source_corpus(5000)
    assert len(text) == 5000 and "import" in text


# -- prepare_corpus -----------------------------------------------------------------------------


def test_prepare_corpus_fits_encodes_and_memory_maps(tmp_path):
    path = write(tmp_path / "t.txt", TEXT * 3)
    tokenizer = CharTokenizer()
    corpus = prepare_corpus([path], tokenizer, tmp_path / "cache")
    assert tokenizer.is_fitted and corpus.vocab_size == tokenizer.vocab_size
    assert len(corpus) == len(TEXT * 3) and corpus.ids.dtype == np.uint8
    assert isinstance(corpus.ids, np.memmap) and not corpus.ids.flags.writeable
    with pytest.raises(ValueError):
        corpus.ids[0] = 1
    assert tokenizer.decode(corpus.ids) == TEXT * 3
    import hashlib

    assert corpus.hash == hashlib.sha256((TEXT * 3).encode()).hexdigest()
    assert corpus.path == tmp_path / "cache" / f"{corpus.key}.ids" and corpus.path.is_file()
    meta = json.loads((tmp_path / "cache" / f"{corpus.key}.json").read_text())
    assert meta["tokens"] == len(corpus) and meta["dtype"] == "uint8"
    assert not corpus.reused and corpus.sources == (str(path),)
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]  # no temporary


def test_cache_is_reused_and_invalidated(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    cache = tmp_path / "cache"
    first = prepare_corpus([path], CharTokenizer(), cache)
    again = prepare_corpus([path], CharTokenizer(), cache)
    assert again.reused and again.key == first.key and again.path == first.path
    # resuming with the fitted tokenizer (as from a checkpoint) reuses it too
    fitted = CharTokenizer().fit(TEXT)
    assert prepare_corpus([path], fitted, cache).reused
    # different tokenizer options or vocabulary: different ids, never the old ones
    other = prepare_corpus([path], CharTokenizer(unknown="replace"), cache)
    assert not other.reused and other.key != first.key
    bigger = CharTokenizer().fit(TEXT + "XYZ")
    redone = prepare_corpus([path], bigger, cache)
    assert not redone.reused and redone.key != first.key
    assert bigger.decode(redone.ids) == TEXT
    # a changed file
    write(path, TEXT.replace("question", "answer"))
    changed = prepare_corpus([path], CharTokenizer(), cache)
    assert not changed.reused and changed.hash != first.hash
    # encoding and normalisation are part of the key
    assert prepare_corpus([path], CharTokenizer(), cache, normalize="NFC").key != changed.key
    assert prepare_corpus([path], CharTokenizer(), cache, encoding="latin-1").key != changed.key
    # a truncated cache file is not trusted
    write(changed.path, b"x")
    repaired = prepare_corpus([path], CharTokenizer(), cache)
    assert not repaired.reused and len(repaired) == len(changed)


def test_ids_dtype_follows_the_vocabulary_size(tmp_path):
    assert ids_dtype(2) == np.uint8 and ids_dtype(256) == np.uint8
    assert ids_dtype(257) == np.uint16 and ids_dtype(65536) == np.uint16
    assert ids_dtype(65537) == np.int32
    many = "".join(chr(0x4E00 + i) for i in range(300)) + "\n"
    corpus = prepare_corpus([write(tmp_path / "cjk.txt", many)], CharTokenizer(), tmp_path / "c")
    assert corpus.ids.dtype == np.uint16 and corpus.vocab_size == 301
    words = " ".join(f"w{i}" for i in range(66_000))
    tokenizer = WordTokenizer()
    big = prepare_corpus([write(tmp_path / "w.txt", words)], tokenizer, tmp_path / "c")
    assert big.ids.dtype == np.int32 and big.vocab_size > 65536
    assert tokenizer.decode(big.ids) == words


@pytest.mark.parametrize("chunk", [3, 16, 1 << 18])
def test_word_corpus_encoded_piece_by_piece_equals_encoding_the_whole(tmp_path, chunk):
    text = "don't  stop\n\n  the cat's hat, isn't it?\tyes ’tis\n" * 20
    tokenizer = WordTokenizer()
    corpus = prepare_corpus(
        [write(tmp_path / "w.txt", text)], tokenizer, tmp_path / "c", chunk_chars=chunk
    )
    assert tokenizer.vocab == WordTokenizer().fit(text).vocab
    assert corpus.ids.tolist() == tokenizer.encode(text)


def test_several_paths_and_directories(tmp_path):
    write(tmp_path / "d" / "b.txt", "second ")
    write(tmp_path / "d" / "a.txt", "first ")
    write(tmp_path / "d" / "skip.md", "not this")
    last = write(tmp_path / "last.txt", "last")
    sources = find_sources([tmp_path / "d", last], include="*.txt")
    tokenizer = CharTokenizer()
    corpus = prepare_corpus(sources, tokenizer, tmp_path / "cache")
    assert tokenizer.decode(corpus.ids) == "first second last"
    assert [name.rsplit("/", 1)[-1] for name in corpus.sources] == ["a.txt", "b.txt", "last.txt"]
    # prepare_corpus also expands a directory itself
    assert (
        prepare_corpus([tmp_path / "d"], CharTokenizer(), tmp_path / "c2")
        .sources[-1]
        .endswith("skip.md")
    )


def test_standard_input_is_spooled_read_twice_and_cleaned_up(tmp_path, monkeypatch):
    fake_stdin(monkeypatch, TEXT.encode())
    tokenizer = CharTokenizer()
    corpus = prepare_corpus(["-"], tokenizer, tmp_path / "cache")
    assert tokenizer.decode(corpus.ids) == TEXT and corpus.sources == ("<stdin>",)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".ids", ".json"]
    fake_stdin(monkeypatch, TEXT.encode())
    assert prepare_corpus(["-"], CharTokenizer(), tmp_path / "cache").reused
    fake_stdin(monkeypatch, b"bad \xff byte")
    with pytest.raises(CorpusDecodeError, match="<stdin>: .*byte offset 4"):
        prepare_corpus(["-"], CharTokenizer(), tmp_path / "cache")
    fake_stdin(monkeypatch, b"")
    with pytest.raises(EmptyCorpusError, match="<stdin>"):
        prepare_corpus(["-"], CharTokenizer(), tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]  # no temporary


def test_bad_input_gets_specific_errors(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(EmptyCorpusError, match="empty.txt"):
        prepare_corpus([write(tmp_path / "empty.txt", b"")], CharTokenizer(), cache)
    with pytest.raises(BinaryFileError, match="a.out.*byte offset 1"):
        prepare_corpus([write(tmp_path / "a.out", b"\x7f\x00ELF")], CharTokenizer(), cache)
    latin = write(tmp_path / "latin.txt", "ok then café".encode("latin-1"))
    with pytest.raises(CorpusDecodeError, match="latin.txt.*byte offset 11.*encoding='latin-1'"):
        prepare_corpus([latin], CharTokenizer(), cache)
    with pytest.raises(SourceNotFoundError):
        prepare_corpus([tmp_path / "nope.txt"], CharTokenizer(), cache)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(NoTextFilesError):
        prepare_corpus([tmp_path / "nothing"], CharTokenizer(), cache)
    # every character dropped by the tokenizer
    skipper = CharTokenizer(unknown="skip").fit("abc")
    with pytest.raises(EmptyCorpusError, match="no token is left"):
        prepare_corpus([write(tmp_path / "xyz.txt", "xyz")], skipper, cache)
    # characters outside a fitted vocabulary say where in the corpus they are
    with pytest.raises(UnknownCharacterError, match="xyz.txt.*'x'"):
        prepare_corpus([tmp_path / "xyz.txt"], CharTokenizer().fit("abc"), cache)
    assert not [p for p in cache.iterdir() if ".tmp" in p.name or p.suffix == ".ids"]


def test_the_byte_tokenizer_takes_any_bytes(tmp_path):
    raw = b"caf\xe9 \x00\xff and \xc3\xa9\n"
    corpus = prepare_corpus([write(tmp_path / "raw.bin", raw)], ByteTokenizer(), tmp_path / "c")
    assert corpus.ids.tobytes() == raw and corpus.ids.dtype == np.uint8


# -- splits -------------------------------------------------------------------------------------


def test_split_is_contiguous_views_with_json_ready_bounds(tmp_path):
    text = "abcdefghij" * 100
    corpus = prepare_corpus([write(tmp_path / "t.txt", text)], CharTokenizer(), tmp_path / "c")
    splits = corpus.split()
    assert splits.bounds == {"train": [0, 900], "val": [900, 950], "test": [950, 1000]}
    assert json.loads(json.dumps(splits.bounds)) == splits.bounds
    assert np.concatenate([splits.train, splits.val, splits.test]).tolist() == corpus.ids.tolist()
    for part in (splits.train, splits.val, splits.test):
        assert np.shares_memory(part, corpus.ids)
    assert splits["val"] is splits.val
    with pytest.raises(CorpusError, match="no split 'dev'"):
        splits["dev"]
    nano = corpus.split(val=0.1, test=0)
    assert nano.bounds["train"] == [0, int(1000 * 0.9)] and len(nano.test) == 0
    assert corpus.split(val=0, test=0).bounds["train"] == [0, 1000]


def test_split_matches_nanogpt_on_an_odd_length():
    from charseq.corpus import split_ids

    n = 1_115_394  # tiny shakespeare
    bounds = split_ids(np.zeros(n, dtype=np.uint8), val=0.1, test=0).bounds
    assert bounds["train"] == [0, int(n * 0.9)]


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (-0.1, 0.05, r"val must be in \[0, 1\)"),
        (1.0, 0.0, r"val must be in \[0, 1\)"),
        (0.05, 1.5, r"test must be in \[0, 1\)"),
        (0.5, 0.5, "val \\+ test must be below 1"),
        ("0.1", 0.05, "val must be a number"),
        (True, 0.05, "val must be a number"),
    ],
)
def test_split_fractions_are_validated(val, test, match):
    from charseq.corpus import split_ids

    with pytest.raises(CorpusError, match=match):
        split_ids(np.arange(100), val=val, test=test)


def test_split_of_a_tiny_corpus_adapts_or_says_the_minimum():
    from charseq.corpus import split_ids

    with pytest.warns(UserWarning, match="get 2 tokens"):
        splits = split_ids(np.arange(20))
    assert splits.bounds == {"train": [0, 16], "val": [16, 18], "test": [18, 20]}
    with pytest.raises(CorpusTooSmallError, match="needs at least 6 tokens"):
        split_ids(np.arange(5))
    with pytest.raises(EmptyCorpusError):
        split_ids(np.arange(0))


# -- memory -------------------------------------------------------------------------------------


def test_encoding_a_large_file_keeps_memory_far_below_its_size(tmp_path):
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefghij klmnopqrstuvwxyz,.\n ABCDEFG", dtype=np.uint8)
    block = alphabet[rng.integers(0, len(alphabet), size=1 << 20)].tobytes()
    path = tmp_path / "big.txt"
    with open(path, "wb") as out:
        for _ in range(40):
            out.write(block)
    size = path.stat().st_size
    tokenizer = CharTokenizer()
    tracemalloc.start()
    try:
        corpus = prepare_corpus([path], tokenizer, tmp_path / "cache")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(corpus) == size == 40 << 20
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB while encoding {size / 2**20:.0f} MiB"
    assert corpus.ids[: 1 << 10].tobytes() == bytes(
        tokenizer.vocab.index(chr(b)) for b in block[: 1 << 10]
    )
