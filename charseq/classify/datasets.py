"""Labelled data sets made on the spot, with nothing downloaded: surnames by language.

:func:`surnames` builds the task of PyTorch's tutorial "Classifying names with a
character-level RNN" (which language is this surname?) from the surname lists that the
`Faker <https://faker.readthedocs.io>`_ package ships for its locales: ``de_DE`` gives German
surnames, ``pl_PL`` Polish ones. Faker is installed by the docs extra
(``pip install "charseq[docs]"``); nothing is fetched when the data is made.

What the lists hold, and what :func:`surnames` does with them:

- Each locale's own list of surnames (:data:`SOURCES` names the lists it reads where that is
  not ``last_names``), each name once.
- Names written in another script than the Latin one (Russian in Cyrillic, Greek) are
  romanised with Faker's own transliteration (``Смирнов`` -> ``Smirnov``), so that the script
  does not give the language away; Latin letters keep their accents (``Dvořák``, ``Müller``),
  as real names do. ``ascii=True`` folds those too (``Dvorak``, ``Muller``), as PyTorch's
  tutorial does.
- A name found in the lists of two languages (``Becker`` is in the German and the French
  list, ``Alvarez`` in the English and the Spanish one) is dropped from both: each name left has
  a single right answer.
- ``per_language`` names are drawn from each language (seeded), so that every class has as
  many examples and a classifier cannot score well by favouring the biggest list.

>>> data = surnames(["de_DE", "it_IT"], per_language=3)  # doctest: +SKIP
>>> data.classes  # doctest: +SKIP
('German', 'Italian')
"""

from __future__ import annotations

import importlib
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from charseq.classify.data import Labelled
from charseq.errors import CharseqError

__all__ = ["LANGUAGES", "SOURCES", "surnames"]

LANGUAGES: dict[str, str] = {
    "en_US": "English",
    "de_DE": "German",
    "fr_FR": "French",
    "it_IT": "Italian",
    "es_ES": "Spanish",
    "nl_NL": "Dutch",
    "pl_PL": "Polish",
    "cs_CZ": "Czech",
    "ru_RU": "Russian",
    "el_GR": "Greek",
}
"""The default locales and the label each gives its names: ten languages with at least 200
surnames each once the shared ones are dropped."""

SOURCES: dict[str, tuple[str, ...]] = {
    "pl_PL": ("male_last_names", "unisex_last_names"),  # its last_names is a placeholder
    "ja_JP": ("last_romanized_names",),  # Japanese in Latin letters (only 50)
}
"""The attributes of Faker's ``faker.providers.person.<locale>.Provider`` read for a locale's
surnames where they are not ``last_names``."""


def surnames(
    locales: Sequence[str] | Mapping[str, str] = tuple(LANGUAGES),
    *,
    per_language: int | None = 500,
    ascii: bool = False,
    seed: int = 0,
) -> Labelled:
    """Surnames labelled with their language, from Faker's locale providers.

    Args:
        locales: Faker locales (``"de_DE"``), each labelled with its language's name from
            :data:`LANGUAGES` (or with the locale itself, for one not there); or a mapping
            from locale to label.
        per_language: how many names to draw from each language (all of a language that has
            fewer); ``None`` keeps every name.
        ascii: also fold Latin letters with accents to plain ASCII (``Dvořák`` -> ``Dvorak``).
        seed: the seed of the draw.

    Returns:
        A :class:`~charseq.classify.data.Labelled`: the languages in the order given, each
        language's names in alphabetical order; a name's source is ``faker/<locale>:<n>``.

    Raises:
        CharseqError: Faker is not installed, a locale has no surname list, two locales share a
            label, or ``per_language`` is below 2.
    """
    if per_language is not None and per_language < 2:
        raise CharseqError(
            f"per_language={per_language}: a language needs at least 2 names (one to learn "
            "from, one to check on)",
            argument="per_language",
        )
    labels = dict(locales) if isinstance(locales, Mapping) else _labels(locales)
    twice = sorted(label for label, n in Counter(labels.values()).items() if n > 1)
    if twice:
        raise CharseqError(
            f"locales=... give the label {twice[0]!r} to more than one locale; name each "
            "locale's label with a mapping, {'en_US': 'American', 'en_GB': 'British'}",
            argument="locales",
        )
    unidecode = _unidecode()
    lists = {}
    for locale in labels:
        fold = unidecode if ascii else _romaniser(unidecode)
        names = {fold(name).strip() for name in _raw_names(locale)}
        lists[locale] = sorted(name for name in names if name)
    seen = Counter(name for names in lists.values() for name in names)
    rng = np.random.default_rng(seed)
    texts, out_labels, sources = [], [], []
    for locale, label in labels.items():
        names = [name for name in lists[locale] if seen[name] == 1]
        if per_language is not None and len(names) > per_language:
            chosen = rng.choice(len(names), size=per_language, replace=False)
            names = [names[i] for i in sorted(chosen)]
        texts += names
        out_labels += [label] * len(names)
        sources += [f"faker/{locale}:{i + 1}" for i in range(len(names))]
    return Labelled(texts, out_labels, sources)


def _labels(locales: Sequence[str]) -> dict[str, str]:
    if isinstance(locales, str):
        raise CharseqError(
            f"locales={locales!r} is one string: pass a list of locales, ['{locales}']",
            argument="locales",
        )
    return {locale: LANGUAGES.get(locale, locale) for locale in locales}


def _unidecode() -> Callable[[str], str]:
    """Faker's transliteration to ASCII, or an error saying how to install Faker."""
    try:
        from faker.decode import unidecode
    except ImportError:
        raise CharseqError(
            "surnames() reads the name lists of the Faker package, which is not installed: "
            'pip install "charseq[docs]" (or pip install faker)'
        ) from None
    return unidecode


def _raw_names(locale: str) -> list[str]:
    """Every surname in ``locale``'s provider lists, as Faker writes them."""
    try:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    except ModuleNotFoundError:
        raise CharseqError(
            f"Faker has no person provider for the locale {locale!r} (locales look like "
            f"'de_DE'; charseq's default ones: {', '.join(LANGUAGES)})",
            argument="locales",
        ) from None
    names: list[str] = []
    for attribute in SOURCES.get(locale, ("last_names",)):
        names += list(getattr(provider, attribute, ()))  # a tuple, list or weighted dict
    if len(set(names)) < 2:
        raise CharseqError(
            f"Faker's {locale} provider has no list of surnames in "
            f"{' or '.join(SOURCES.get(locale, ('last_names',)))}",
            argument="locales",
        )
    return names


def _romaniser(unidecode: Callable[[str], str]) -> Callable[[str], str]:
    """A function that transliterates a name to ASCII when it holds a letter that is not
    Latin, and leaves a Latin name (accents and all) as it is."""

    def fold(name: str) -> str:
        latin = all(
            not char.isalpha() or unicodedata.name(char, "").startswith("LATIN") for char in name
        )
        return name if latin else unidecode(name)

    return fold
