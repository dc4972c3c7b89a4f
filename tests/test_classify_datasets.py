"""Surnames by language from Faker's locale lists (charseq.classify.datasets): balanced,
romanised, each name with one language, the same for the same seed; clear errors."""

from __future__ import annotations

import builtins
from collections import Counter

import pytest

from charseq.classify.data import stratified_split
from charseq.classify.datasets import LANGUAGES, surnames
from charseq.errors import CharseqError

pytest.importorskip("faker")


def test_the_default_set_is_ten_balanced_languages_each_name_with_one():
    data = surnames()
    counts = Counter(data.labels)
    assert sorted(counts) == sorted(LANGUAGES.values()) and len(counts) == 10
    assert min(counts.values()) >= 190 and max(counts.values()) == 500
    assert len(set(data.texts)) == len(data.texts)  # no name in two languages (or twice)
    assert data.sources[0] == "faker/en_US:1"
    stratified_split(data.labels, val=0.1, test=0.1, seed=0)  # enough of each to split


def test_other_scripts_are_romanised_and_latin_accents_kept_unless_ascii():
    data = surnames(["ru_RU", "cs_CZ", "el_GR"], per_language=None)
    pairs = zip(data.texts, data.labels, strict=True)
    assert all(text.isascii() for text, label in pairs if label != "Czech")
    assert "Smirnov" in data.texts and any(not text.isascii() for text in data.texts)
    folded = surnames(["ru_RU", "cs_CZ"], per_language=None, ascii=True)
    assert all(text.isascii() for text in folded.texts)


def test_the_draw_is_seeded_and_a_mapping_names_the_labels():
    one = surnames({"de_DE": "Deutsch", "it_IT": "Italiano"}, per_language=5, seed=3)
    assert one == surnames({"de_DE": "Deutsch", "it_IT": "Italiano"}, per_language=5, seed=3)
    assert one.classes == ("Deutsch", "Italiano") and len(one) == 10
    assert one.texts != surnames(["de_DE", "it_IT"], per_language=5, seed=4).texts


def test_mistakes_get_clear_errors(monkeypatch):
    with pytest.raises(CharseqError, match="no person provider for the locale 'xx_XX'"):
        surnames(["de_DE", "xx_XX"])
    with pytest.raises(CharseqError, match="one string"):
        surnames("de_DE")
    with pytest.raises(CharseqError, match="per_language=1"):
        surnames(per_language=1)
    with pytest.raises(CharseqError, match="label 'English' to more than one locale"):
        surnames({"en_US": "English", "en_GB": "English"})

    real_import = builtins.__import__

    def no_faker(name, *args, **kwargs):
        if name.startswith("faker"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faker)
    with pytest.raises(CharseqError, match=r'pip install "charseq\[docs\]"'):
        surnames()
