"""The ``byte`` tokenizer: the UTF-8 bytes of the text, 256 fixed ids that cover any text."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from charseq.builtins.tokenizers._vocab import (
    as_id_array,
    check_ids,
    check_state,
    require_str,
)
from charseq.checks import describe_char
from charseq.errors import TokenizerError
from charseq.interfaces import Tokenizer


class ByteTokenizer(Tokenizer):
    """The UTF-8 bytes of the text: a fixed vocabulary of 256 ids that covers any text.

    Decoding replaces invalid byte sequences (a model's half-written character) with U+FFFD.
    Text read with ``errors="surrogateescape"`` round-trips its raw bytes.

    Example::

        >>> ByteTokenizer().encode("é!")
        [195, 169, 33]
    """

    kind = "byte"

    def __init__(self) -> None:
        pass

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(self._bytes(text))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(self._bytes(text), dtype=np.uint8).copy()  # writable, like encode

    def _bytes(self, text: str) -> bytes:
        require_str(text, "encode")
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as error:
            char = text[error.start]
            raise TokenizerError(
                f"the text has a lone surrogate {describe_char(char)} at position "
                f"{error.start}, which is not valid Unicode and has no UTF-8 bytes"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return _id_bytes(ids).decode("utf-8", "replace")

    def stream_decoder(self) -> Callable[[Sequence[int], bool], str]:
        """UTF-8 decoding of bytes that arrive a few at a time: a character's first bytes wait
        for the rest, and an invalid sequence is replaced once it is known to be invalid."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")

        def decode(ids: Sequence[int], final: bool = False) -> str:
            return decoder.decode(_id_bytes(ids), final)

        return decode

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.kind)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def _id_bytes(ids: Iterable[int]) -> bytes:
    """Byte ids, checked to be in ``range(256)``, as the bytes they stand for."""
    array = as_id_array(ids)
    check_ids(array, 256)
    return array.astype(np.uint8).tobytes()
