"""The four plugin kinds: Tokenizer, Cell, OptimizerFactory and Sampler.

These are the only contracts between the core and a plugin. They are small on purpose: a cell
plugin writes :meth:`Cell.initial_state` and :meth:`Cell.step`; everything else (the loop over
time, stacking, dropout, detaching for truncated backpropagation, beam reordering) is the core's.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

import attrs
import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from charseq.generate import Decoder

State = tuple[Tensor, ...]
"""A recurrent state: a tuple of tensors, each with the batch on its first dimension."""

UnknownPolicy = Literal["error", "skip", "replace"]
"""What a tokenizer does with text outside its vocabulary: raise, drop it, or map it to a
replacement token. A tokenizer that has such a policy keeps it under ``"unknown"`` in its
state (:meth:`Tokenizer.state_dict`), where a caller can override it (``unknown=`` of
:meth:`~charseq.Pipeline.generate`, the command line's ``--unknown``)."""

UNKNOWN_POLICIES: tuple[UnknownPolicy, ...] = get_args(UnknownPolicy)
"""The :data:`UnknownPolicy` values, in order: ``("error", "skip", "replace")``."""


class Tokenizer(abc.ABC):
    """Turns text into integer ids and back.

    A tokenizer is built from its options, fitted on a corpus (a no-op for fixed vocabularies) and
    then used to :meth:`encode` and :meth:`decode`. Its whole state is a JSON-serialisable dict, so
    a checkpoint can rebuild it without running code.
    """

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids; every id produced by :meth:`encode` is in ``range(vocab_size)``."""

    @property
    def is_fitted(self) -> bool:
        """Whether the vocabulary is known (fixed-vocabulary tokenizers are always fitted)."""
        return True

    def fit(self, text: str) -> Tokenizer:
        """Learn the vocabulary from ``text``; returns ``self``. Default: nothing to learn."""
        return self

    def fit_chunks(self, chunks: Iterable[str]) -> Tokenizer:
        """Learn the vocabulary from a corpus given as consecutive pieces; returns ``self``.

        Lets a corpus larger than memory be fitted. The default joins the pieces and calls
        :meth:`fit`; tokenizers that can learn incrementally override it.
        """
        return self.fit("".join(chunks))

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text to ids. Characters outside the vocabulary follow the tokenizer's policy."""

    def encode_array(self, text: str) -> np.ndarray:
        """:meth:`encode` as a numpy integer array; the corpus reader encodes with it.

        The default converts :meth:`encode`'s list; tokenizers that can encode straight into an
        array override it (the built-in ``char`` and ``byte`` do, at hundreds of MB/s).
        """
        return np.asarray(self.encode(text), dtype=np.int64)

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text."""

    def stream_decoder(self) -> Callable[[Sequence[int], bool], str] | None:
        """A decoder for ids that arrive a few at a time, or ``None`` (the default).

        For a tokenizer whose text for an id can depend on the ids after it (bytes of one
        UTF-8 character), return a function ``decode(ids, final)`` that keeps state between
        calls and returns the text the ids so far have fixed (``final=True``: all of it); its
        pieces joined equal :meth:`decode` of all the ids. Streaming uses it; without one,
        streaming decodes the new ids and waits while they end in U+FFFD (at most 4 ids).
        """
        return None

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the vocabulary); :meth:`load_state_dict` restores it."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Cell(nn.Module, abc.ABC):
    r"""One recurrent layer, written as one time step.

    A cell maps an input :math:`x_t` and a state to an output :math:`h_t` and a new state. The core
    owns the loop over time (:func:`charseq.loop.unroll`); a cell that only writes :meth:`step`
    works everywhere. A cell may override :meth:`forward` with a fused whole-sequence
    implementation, which must agree with its own step loop (``charseq.testing`` checks it).

    Args:
        input_size: The number of features in the input :math:`x_t`.
        hidden_size: The number of features in the output :math:`h_t`.

    Shape:
        - step input: :math:`(B, I)`; step output: :math:`(B, H)`.
        - forward input: :math:`(B, T, I)`; forward output: :math:`(B, T, H)`.
        - state: a tuple of tensors with the batch first, e.g. ``(h,)`` or ``(h, c)``.
    """

    state_names: ClassVar[tuple[str, ...]] = ()
    """Names of the state's tensors, in order, for inspection (``("h", "c")`` for the LSTM).
    Optional: without them :mod:`charseq.inspect` calls them ``state0``, ``state1``, ..."""

    recurrent_weights: ClassVar[tuple[str, ...]] = ()
    """Names of the parameters that multiply the previous state (``("weight_hh",)`` for the
    built-in cells): the ones weight drop (``cell.weight_drop``, DropConnect as in AWD-LSTM)
    zeroes entries of, with one mask per batch. Optional: a cell that names none runs with
    ``weight_drop = 0`` only, and refuses more with an error naming it."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    @abc.abstractmethod
    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The state at the start of a sequence, e.g. zeros of shape ``(batch_size, H)``.

        The core always passes ``device`` and ``dtype`` (those of the input); a cell may treat
        ``None`` as "like my parameters" or as torch's defaults.
        """

    @abc.abstractmethod
    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: ``x_t`` of shape ``(B, I)`` to ``(h_t (B, H), new_state)``."""

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The whole sequence: ``x`` of shape ``(B, T, I)`` to ``(outputs (B, T, H), state)``."""
        # function-local: charseq.loop imports this module (the Cell and State it runs)
        from charseq.loop import unroll

        return unroll(self, x, state)

    def internals(self, x_t: Tensor, state: State) -> dict[str, Tensor]:
        """Named values one :meth:`step` computes on the way, for inspection only: an LSTM's
        gates ``i``, ``f``, ``g``, ``o``, each ``(B, H)``, batch first like the state.

        Optional (the default is none): :mod:`charseq.inspect` records a cell's outputs and
        states without it, and calls this, when a cell has it, beside ``step(x_t, state)`` with
        the same arguments. It must not change the cell or the state. Values that always lie
        in [0, 1] (sigmoid gates) get saturation statistics.
        """
        return {}

    def inference_step(self) -> Callable[[Tensor, State], tuple[Tensor, State]]:
        """The step generation runs: a function equal to :meth:`step` to float rounding
        (``charseq.testing`` checks it), called under ``torch.no_grad()`` once per character
        while the weights stay as they are. The default is :meth:`step` itself;
        :mod:`charseq.onerow` explains the one-row numpy path (``vector_step``) the built-in
        cells take, and the how-to "Make generation fast for your cell" writes one.
        """
        return self.step


@runtime_checkable
class OptimizerFactory(Protocol):
    """Builds a ``torch.optim.Optimizer`` over ``parameters`` from a plugin's options.

    A plain function is enough::

        def adam(parameters, *, lr=2e-3, betas=(0.9, 0.999)):
            return torch.optim.Adam(parameters, lr=lr, betas=betas)
    """

    def __call__(
        self, parameters: Iterable[nn.Parameter], **options: Any
    ) -> torch.optim.Optimizer: ...


@attrs.frozen(eq=False)
class SamplerOutput:
    """What a sampler returns.

    Attributes:
        ids: generated ids, one row per sequence of the decoder, shape ``(B, T)`` (the prime is
            not included).
        scores: one score per row, shape ``(B,)`` (beam search: the length-penalised
            log-probability of the best beam), or ``None`` where the sampler does not score.
    """

    ids: Tensor
    scores: Tensor | None = None


class Sampler(abc.ABC):
    """A decoding strategy: drives a :class:`~charseq.generate.Decoder` to produce new ids.

    Token-by-token strategies subclass :class:`TokenSampler` and only write :meth:`select`.
    Search strategies (beam) write :meth:`sample` and use :meth:`Decoder.reorder`.

    Attributes:
        deterministic: ``True`` for a sampler whose ids depend on the logits alone, never on
            the random generator (greedy, beam search); generating several samples from one
            prime with it then warns that they are identical.
    """

    deterministic: bool = False

    @abc.abstractmethod
    def sample(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> SamplerOutput:
        """Produce ``max_new_tokens`` ids for each of the decoder's sequences.

        A token-by-token sampler may stop early once ``decoder.all_finished`` (every sequence
        produced a stop string) and reports each step's ids with ``decoder.emit(ids)``.
        """


class TokenSampler(Sampler):
    """A sampler that picks each next id from the next-token logits alone.

    It writes :meth:`select`; :meth:`steps` is its loop over time (one choice per step, fed
    back with ``decoder.advance``), which :meth:`sample` and streaming both run.
    """

    @abc.abstractmethod
    def select(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Choose the next ids: ``logits`` ``(B, V)`` to ids ``(B,)`` (int64)."""

    def steps(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> Iterator[Tensor]:
        """Yield each step's chosen ids ``(B,)``, at most ``max_new_tokens`` times.

        Ends early once ``decoder.all_finished`` (every sequence produced a stop string). The
        last choice is yielded but not fed back to the decoder (nothing reads its logits).
        """
        choose = self._chooser(decoder, max_new_tokens, generator)
        for t in range(max_new_tokens):
            ids = choose(decoder.logits)  # (B, V) -> (B,)
            yield ids
            if t + 1 == max_new_tokens:  # the last choice is returned, not fed back
                return
            decoder.advance(ids)
            if decoder.all_finished:  # every sequence hit a stop string
                return

    def _chooser(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None
    ) -> Callable[[Tensor], Tensor]:
        """What :meth:`steps` calls once per step on the logits: :meth:`select`, unless a
        sampler prepares something for the whole run (the built-in temperature sampler draws
        the noise of many steps at once and tracks the ids each sequence has)."""
        return lambda logits: self.select(logits, generator)

    def sample(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> SamplerOutput:
        """Run :meth:`steps`, reporting each step's ids with ``decoder.emit``."""
        chosen: list[Tensor] = []
        for ids in self.steps(decoder, max_new_tokens, generator):
            chosen.append(ids)
            decoder.emit(ids)  # streams the choices
        if not chosen:
            batch = decoder.logits.shape[0]
            return SamplerOutput(decoder.logits.new_empty(batch, 0, dtype=torch.long))
        return SamplerOutput(torch.stack(chosen, dim=1))  # (B, T)


KINDS: Sequence[str] = ("tokenizer", "cell", "optimizer", "sampler")
"""The plugin kinds, in the order a pipeline uses them."""
