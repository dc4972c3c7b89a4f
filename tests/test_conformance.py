"""The conformance kit (charseq.testing) on every built-in component, and proof it can fail.

The first tests run every check on every built-in cell, tokenizer, sampler and constraint. The
rest feed the kit deliberately broken components and assert that the right check rejects each
one (the broken constraints are in tests/test_kit_constraints.py).
"""

from __future__ import annotations

import functools

import attrs
import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from torch import nn

import charseq
from charseq.builtins.samplers import BeamSampler, TemperatureSampler
from charseq.builtins.tokenizers import ByteTokenizer
from charseq.errors import CharseqError
from charseq.interfaces import Tokenizer, TokenSampler
from charseq.loop import unroll
from charseq.registry import Registry
from charseq.testing import (
    CheckError,
    CheckSkipped,
    ElmanCell,
    all_checks,
    check_activations_match_step,
    check_batch_independence,
    check_beam_length_penalty,
    check_beam_scores,
    check_cell_api,
    check_compiled_matches_step,
    check_component,
    check_decode_encode_round_trip,
    check_detach_state,
    check_deterministic_sampler_ignores_the_generator,
    check_dtype_device,
    check_fused_matches_step,
    check_fused_stack_matches_layers,
    check_gradcheck,
    check_greedy_is_argmax,
    check_ids_in_range,
    check_inference_step_matches_step,
    check_masked_ids_never_sampled,
    check_min_p_support,
    check_no_nan_long_sequence,
    check_num_return_sequences,
    check_plugin_installed,
    check_repetition_penalty,
    check_sampled_ids_in_vocab,
    check_sampler_reproducible,
    check_seeded_determinism,
    check_state_dict_round_trip,
    check_stream_decoder_matches_decode,
    check_top_k_support,
    check_unknown_policy,
    check_vocab_json_round_trip,
    get_tags,
    parametrize_with_checks,
)

CHECKED_KINDS = ("cell", "tokenizer", "sampler")
BUILTINS = [
    c
    for c in charseq.get_registry().components()
    if c.kind in CHECKED_KINDS and c.owner.distribution == "charseq"
]


@parametrize_with_checks(BUILTINS)
def test_builtin_conforms(component, check):
    check(component)


def _constraint(name, **options):
    """A built-in constraint's factory with ``options`` bound (the test id shows them)."""
    return functools.partial(charseq.get_registry().get("constraint", name).factory, **options)


CONSTRAINTS = [
    "constraint:stop",  # the defaults: no stop string
    "constraint:form",  # the defaults: a five-character quatrain (wujue)
    _constraint("stop", strings=("\n", "e.")),
    _constraint("allowed", chars="abc \n"),
    _constraint("acrostic", heads="sea"),  # a head after each newline
    _constraint("acrostic", heads="春夏秋冬", after="，。"),  # by clause
    _constraint("acrostic", heads="ab", after="\n", at_start=True),
    _constraint("form", template="?????\n?????\n"),  # lines of five
]
"""The built-in constraints with their defaults where these compile (an empty allowed set or
acrostic is refused before generation) and with options that exercise them."""


@parametrize_with_checks(CONSTRAINTS, kind="constraint")
def test_builtin_constraint_conforms(component, check):
    check(component)


def test_every_builtin_constraint_is_checked():
    registry = charseq.get_registry()
    builtins = {
        c.name for c in registry.components("constraint") if c.owner.distribution == "charseq"
    }
    checked = {c.split(":")[1] if isinstance(c, str) else c.func.__name__ for c in CONSTRAINTS}
    assert builtins == {"stop", "allowed", "acrostic", "form"}
    assert builtins <= checked, f"missing built-in constraints: {sorted(builtins - checked)}"


def test_every_builtin_is_checked():
    checked = {f"{c.kind}:{c.name}" for c in BUILTINS}
    expected = {
        "cell:rnn", "cell:lstm", "cell:gru",
        "tokenizer:char", "tokenizer:byte", "tokenizer:word",
        "sampler:greedy", "sampler:temperature", "sampler:beam",
    }  # fmt: skip
    assert expected <= checked, f"missing builtins: {sorted(expected - checked)}"


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_builtin_cells_engage_their_fused_kernel(name):
    """The kit only checks a fused path that runs; a builtin's kernel must not decline a plain
    stack (DESIGN: builtins run the whole sequence on the fused cuDNN / oneDNN kernels)."""
    component = charseq.get_registry().get("cell", name)
    cells = [component.factory(3, 4), component.factory(4, 4)]
    state = [cell.initial_state(2) for cell in cells]
    with torch.no_grad():
        fused = type(cells[0]).forward_stack(cells, torch.randn(2, 5, 3), state, 0.0, False)
    assert fused is not None, f"{name}: forward_stack declined a plain 2-layer float32 stack"


# -- broken cells ---------------------------------------------------------------------------------


class FusedDisagrees(ElmanCell):
    """A "fused" forward that is slightly off its own step."""

    def forward(self, x, state=None):
        out, state = unroll(self, x, state)
        return out + 1e-3, state


class LeaksAcrossRows(ElmanCell):
    """Feeds the batch mean of the state back: row i depends on the other rows."""

    def step(self, x_t, state):
        (h,) = state
        h = torch.tanh(
            nn.functional.linear(x_t, self.weight_ih, self.bias)
            + h.mean(dim=0, keepdim=True) @ self.weight_hh.T
        )
        return h, (h,)


class RemembersBetweenCalls(ElmanCell):
    """Keeps the last output on the module (with its graph) and adds it on the next call."""

    carry = None

    def step(self, x_t, state):
        h, _ = super().step(x_t, state)
        if self.carry is not None and self.carry.shape == h.shape:
            h = h + 0.1 * self.carry
        self.carry = h
        return h, (h,)


class DetachesAWeight(ElmanCell):
    """Cuts the gradient of weight_ih."""

    def step(self, x_t, state):
        (h,) = state
        h = torch.tanh(
            nn.functional.linear(x_t, self.weight_ih.detach(), self.bias) + h @ self.weight_hh.T
        )
        return h, (h,)


class ListState(ElmanCell):
    def initial_state(self, batch_size, device=None, dtype=None):
        return [torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)]


class WideState(ElmanCell):
    def initial_state(self, batch_size, device=None, dtype=None):
        return (torch.zeros(batch_size, self.hidden_size + 1, device=device, dtype=dtype),)


class Explodes(ElmanCell):
    def step(self, x_t, state):
        (h,) = state
        h = 2 * h + 1 + nn.functional.linear(x_t, self.weight_ih)
        return h, (h,)


class InternalsWriteIntoState(ElmanCell):
    def internals(self, x_t, state):
        state[0].mul_(0.5)  # in place: the step after it sees another state
        return {"a": state[0] + 1}


class InternalsNotBatchFirst(ElmanCell):
    def internals(self, x_t, state):
        return {"a": state[0].sum(0)}  # (H,): the batch summed away


class IgnoresDtype(ElmanCell):
    def initial_state(self, batch_size, device=None, dtype=None):
        return (torch.zeros(batch_size, self.hidden_size),)


class UnseededInit(ElmanCell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        generator = torch.Generator().manual_seed(torch.seed())
        with torch.no_grad():
            self.bias.copy_(torch.rand(hidden_size, generator=generator))


class WeightNotRegistered(ElmanCell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.scale = [torch.rand(1)]  # a plain list: not in state_dict

    def step(self, x_t, state):
        h, _ = super().step(x_t * self.scale[0], state)
        return h, (h,)


class StackDropsOutInEval(ElmanCell):
    """A fused stack kernel that applies dropout even in eval mode, and after the last layer."""

    @classmethod
    def forward_stack(cls, cells, x, state, dropout, training):
        new_state = []
        for cell, layer_state in zip(cells, state, strict=True):
            x, layer_state = unroll(cell, x, layer_state)
            new_state.append(layer_state)
            x = nn.functional.dropout(x, dropout, True)
        return x, new_state


class InferenceForgetsBias(ElmanCell):
    """An inference step that drops the bias: right shapes, wrong values."""

    def inference_step(self):
        def step(x_t, state):
            (h,) = state
            h = torch.tanh(x_t @ self.weight_ih.T + h @ self.weight_hh.T)
            return h, (h,)

        return step


class VectorElman:
    """An Elman inference step with a numpy ``vector_step`` (a stack runs it on arrays); the
    tensor call is the cell's own step, so only ``vector_step`` can be wrong."""

    def __init__(self, cell, *, bias=True, in_place=False):
        self.step = cell.step
        self.w_ih, self.w_hh = cell.weight_ih.detach().numpy(), cell.weight_hh.detach().numpy()
        self.b = cell.bias.detach().numpy() if bias else 0.0
        self.in_place = in_place

    def __call__(self, x_t, state):
        return self.step(x_t, state)

    def vector_step(self, x, state):
        (h,) = state
        z = self.w_ih @ x + self.b + self.w_hh @ h
        out = np.tanh(z, out=h) if self.in_place else np.tanh(z)
        return out, (out,)


class VectorStepForgetsBias(ElmanCell):
    def inference_step(self):
        return VectorElman(self, bias=False)


class VectorStepWritesIntoState(ElmanCell):
    """Right values, but written into the state array it was given (which the previous
    state's tensors share)."""

    def inference_step(self):
        return VectorElman(self, in_place=True)


class CompiledDiffers(ElmanCell):
    """A step that takes another (wrong) branch when torch.compile traces it."""

    def step(self, x_t, state):
        h, state = super().step(x_t, state)
        if torch.compiler.is_compiling():
            h = h * 0.5
        return h, (h,)


class Zoneout(ElmanCell):
    """Random in training only (zoneout: each unit keeps its old value with probability 0.2),
    drawing from torch's global generator as dropout does."""

    def step(self, x_t, state):
        h, _ = super().step(x_t, state)
        if self.training:
            keep = torch.rand_like(h) < 0.2
            h = torch.where(keep, state[0], h)
        return h, (h,)


def test_a_cell_random_in_training_passes_the_compile_check():
    # eager and compiled runs draw the same numbers: the check reseeds torch's generator for each
    before = torch.random.get_rng_state()
    check_compiled_matches_step(Zoneout)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_right_vector_step_passes_the_inference_check():
    class Right(ElmanCell):
        def inference_step(self):
            return VectorElman(self)

    check_inference_step_matches_step(Right)


@pytest.mark.parametrize(
    ("cell", "check", "message"),
    [
        (VectorStepForgetsBias, check_inference_step_matches_step, "differs from step's"),
        (VectorStepWritesIntoState, check_inference_step_matches_step, "wrote into the arrays"),
        (FusedDisagrees, check_fused_matches_step, "differ from the step loop"),
        (CompiledDiffers, check_compiled_matches_step, "compiled outputs differ"),
        (LeaksAcrossRows, check_batch_independence, "run alone"),
        (RemembersBetweenCalls, check_detach_state, "reached the first chunk"),
        (DetachesAWeight, check_gradcheck, "finite differences"),
        (ListState, check_cell_api, "not a tuple of tensors"),
        (WideState, check_cell_api, "initial_state(2) gave tuple(Tensor(2, 5)) for hidden_size 4"),
        (Explodes, check_no_nan_long_sequence, "NaN or inf"),
        (IgnoresDtype, check_dtype_device, "initial_state(2"),
        (UnseededInit, check_seeded_determinism, "same torch.manual_seed"),
        (WeightNotRegistered, check_state_dict_round_trip, "loaded the state dict"),
        (StackDropsOutInEval, check_fused_stack_matches_layers, "layer by layer"),
        (InferenceForgetsBias, check_inference_step_matches_step, "differ from step's"),
        (FusedDisagrees, check_activations_match_step, "differs from the model's forward"),
        (InternalsWriteIntoState, check_activations_match_step, "changed the state"),
        (InternalsNotBatchFirst, check_activations_match_step, "the batch must come first"),
    ],
    ids=lambda p: getattr(p, "__name__", None),
)
def test_kit_rejects_broken_cell(cell, check, message):
    with pytest.raises(CheckError) as caught:
        check(cell)
    text = str(caught.value)
    assert message in text
    assert f"charseq.testing.{check.__name__} failed for cell" in text
    assert "How to fix:" in text


def test_kit_accepts_reference_cell():
    for check in all_checks("cell"):
        try:
            check(ElmanCell)
        except CheckSkipped:
            assert check in (
                check_fused_matches_step,
                check_fused_stack_matches_layers,
                check_inference_step_matches_step,
            )


def test_checks_leave_global_rng_alone():
    before = torch.random.get_rng_state()
    check_seeded_determinism(ElmanCell)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_inapplicable_check_is_skipped():
    assert get_tags(ElmanCell, "cell") == {
        "fused_forward": False,
        "fused_stack": False,
        "inference_step": False,
    }
    with pytest.raises(CheckSkipped, match="needs a fused `forward`"):
        check_fused_matches_step(ElmanCell)


# -- broken tokenizers ----------------------------------------------------------------------------


class CharTokenizer(Tokenizer):
    """A small correct character tokenizer; the broken ones below change one thing."""

    def __init__(self, unknown="error"):
        self.unknown = unknown
        self.vocab = None

    @property
    def is_fitted(self):
        return self.vocab is not None

    @property
    def vocab_size(self):
        return len(self.vocab) + (self.unknown == "replace")

    def fit(self, text):
        self.vocab = sorted(set(text))
        return self

    def encode(self, text):
        index = {c: i for i, c in enumerate(self.vocab)}
        ids = []
        for c in text:
            if c in index:
                ids.append(index[c])
            elif self.unknown == "error":
                raise CharseqError(f"character {c!r} is not in the vocabulary")
            elif self.unknown == "replace":
                ids.append(len(self.vocab))
        return ids

    def decode(self, ids):
        return "".join(self.vocab[i] if i < len(self.vocab) else "\ufffd" for i in ids)

    def state_dict(self):
        return {"vocab": self.vocab, "unknown": self.unknown}

    def load_state_dict(self, state):
        self.vocab, self.unknown = list(state["vocab"]), state["unknown"]


class Lowercases(CharTokenizer):
    def fit(self, text):
        return super().fit(text.lower())

    def encode(self, text):
        return super().encode(text.lower())


class SetInState(CharTokenizer):
    def state_dict(self):
        return {"vocab": set(self.vocab), "unknown": self.unknown}


class IntKeysInState(CharTokenizer):
    def state_dict(self):
        return {"itos": dict(enumerate(self.vocab)), "unknown": self.unknown}

    def load_state_dict(self, state):
        itos = state["itos"]
        self.vocab = [itos[k] for k in sorted(itos, key=str)]  # "10" sorts before "2"
        self.unknown = state["unknown"]


class CountsOneShort(CharTokenizer):
    @property
    def vocab_size(self):
        return max(len(self.vocab) - 1, 1)


class SilentOnUnknown(CharTokenizer):
    def encode(self, text):
        index = {c: i for i, c in enumerate(self.vocab)}
        return [index.get(c, 0) for c in text]


class ArrayDisagrees(CharTokenizer):
    def encode_array(self, text):
        return np.asarray(self.encode(text)[::-1])  # a faster path that got the order wrong


class LowercaseOnly(Lowercases):
    """Lower-cases, but says so: it claims only lower-case texts through its tags."""

    def __charseq_tags__(self):
        return {"texts": st.text("abc xyz\n", min_size=1)}


def test_tags_narrow_the_texts_a_tokenizer_claims():
    assert isinstance(get_tags(LowercaseOnly, "tokenizer")["texts"], st.SearchStrategy)
    check_decode_encode_round_trip(LowercaseOnly)


class LowercaseAlphabet(Lowercases):
    """The same claim as an alphabet: no Hypothesis where the plugin runs."""

    def __charseq_tags__(self):
        return {"texts": {"alphabet": "abcdefghijklmnopqrstuvwxyz .\n"}}


def test_an_alphabet_tag_narrows_the_texts_without_hypothesis():
    check_decode_encode_round_trip(LowercaseAlphabet)
    with pytest.raises(CheckError, match="decode"):  # the claim is what is held to
        check_decode_encode_round_trip(LowercaseAlphabet, texts={"alphabet": "ABC"})


class ChunkByChunkBytes(ByteTokenizer):
    """Decodes each chunk of streamed bytes on its own, splitting characters across chunks."""

    def stream_decoder(self):
        return lambda ids, final=False: self.decode(ids)


def test_kit_accepts_reference_tokenizer():
    for check in all_checks("tokenizer"):
        check(CharTokenizer)


def test_the_byte_tokenizers_stream_decoder_passes_its_check():
    check_stream_decoder_matches_decode(ByteTokenizer)
    with pytest.raises(CheckSkipped, match="stream_decoder"):
        check_stream_decoder_matches_decode(CharTokenizer)


@pytest.mark.parametrize(
    ("tokenizer", "check", "message"),
    [
        (Lowercases, check_decode_encode_round_trip, "decode(encode(s)) != s"),
        (ArrayDisagrees, check_decode_encode_round_trip, "encode_array(s) != encode(s)"),
        (SetInState, check_vocab_json_round_trip, "not JSON-serialisable"),
        (IntKeysInState, check_vocab_json_round_trip, "JSON round trip"),
        (CountsOneShort, check_ids_in_range, "outside range(vocab_size"),
        (SilentOnUnknown, check_unknown_policy, "without raising"),
        (ChunkByChunkBytes, check_stream_decoder_matches_decode, "fed in chunks gave"),
    ],
    ids=lambda p: getattr(p, "__name__", None),
)
def test_kit_rejects_broken_tokenizer(tokenizer, check, message):
    with pytest.raises(CheckError, match="How to fix") as caught:
        check(tokenizer)
    assert message in str(caught.value)


# -- broken samplers, registered through a registry of their own ----------------------------------


class ArgMin(TokenSampler):
    def select(self, logits, generator=None):
        return logits.argmin(dim=-1)


class GlobalRng(TokenSampler):
    """Ignores the generator it is given."""

    def select(self, logits, generator=None):
        return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)


class TopKOffByOne(TokenSampler):
    def __init__(self, top_k=None):
        self.top_k = top_k

    def select(self, logits, generator=None):
        if self.top_k:
            kth = logits.topk(self.top_k + 1, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)


class PadsWithMasked(TokenSampler):
    """Samples from the uniform distribution, ignoring -inf logits."""

    def select(self, logits, generator=None):
        uniform = torch.ones_like(logits)
        return torch.multinomial(uniform, 1, generator=generator).squeeze(1)


class UnsortedBeam(charseq.Sampler):
    """Greedy paths from num_beams starting ids, scored in the wrong order."""

    def __init__(self, num_beams=2):
        self.num_beams = num_beams

    def sample(self, decoder, max_new_tokens, generator=None):
        decoder.reorder(torch.zeros(self.num_beams, dtype=torch.long))
        first = decoder.logits[0].topk(self.num_beams).indices
        ids = [first]
        for _ in range(max_new_tokens - 1):
            decoder.advance(ids[-1])
            ids.append(decoder.logits.argmax(-1))
        out = torch.stack(ids, 1)[: self.num_beams]
        return charseq.SamplerOutput(out, torch.arange(self.num_beams, dtype=torch.float))


class AbsoluteMinP(TokenSampler):
    """Cuts at probability min_p itself, not min_p times the largest probability."""

    def __init__(self, min_p=0.0):
        self.min_p = min_p

    def select(self, logits, generator=None):
        probs = torch.softmax(logits, dim=-1)
        top = torch.zeros_like(probs, dtype=torch.bool).scatter(1, probs.argmax(-1, True), True)
        probs = torch.where((probs >= self.min_p) | top, probs, 0.0)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class SignBlindPenalty(TemperatureSampler):
    """Divides every repeated logit by the penalty, negative ones too (which favours them)."""

    def process(self, logits, seen=None):
        if seen is not None:
            logits = torch.where(seen, logits / self.repetition_penalty, logits)
        return super().process(logits)


class InterleavedBeams(BeamSampler):
    """Returns the rows' sequences interleaved, (R, B, T) order instead of (B, R, T)."""

    def sample(self, decoder, max_new_tokens, generator=None):
        out = super().sample(decoder, max_new_tokens, generator)
        returned = self.num_return_sequences
        rows = out.ids.shape[0] // returned
        ids = out.ids.view(rows, returned, -1).transpose(0, 1).reshape(rows * returned, -1)
        scores = out.scores.view(rows, returned).t().reshape(-1)
        return charseq.SamplerOutput(ids, scores)


class UnpenalisedBeamScores(BeamSampler):
    """Returns the plain sum of log-probabilities whatever length_penalty says."""

    def sample(self, decoder, max_new_tokens, generator=None):
        out = super().sample(decoder, max_new_tokens, generator)
        length = max(max_new_tokens, 1) ** self.length_penalty
        return charseq.SamplerOutput(out.ids, out.scores * length)


class ClaimsDeterminism(TokenSampler):
    """Says it is deterministic, yet draws from the generator."""

    deterministic = True

    def select(self, logits, generator=None):
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)


class FloatIds(TokenSampler):
    """Returns the arg-max as floats."""

    def select(self, logits, generator=None):
        return logits.argmax(-1).float()


class OffTheEnd(TokenSampler):
    """One past the arg-max: the last id's successor is outside the vocabulary."""

    def select(self, logits, generator=None):
        return torch.full_like(logits.argmax(-1), logits.shape[-1])


class ArgMaxPlusOne(TokenSampler):
    """One past the arg-max: passed every applicable check while they used logits where the
    arg-max's successor happened to be allowed and inside the vocabulary."""

    def select(self, logits, generator=None):
        return logits.argmax(-1) + 1


def lax_beam(num_beams=4, length_penalty=1.0, num_return_sequences=1):
    """Quietly returns num_beams sequences when asked for more."""
    returned = min(num_return_sequences, num_beams)
    return BeamSampler(
        num_beams=num_beams, length_penalty=length_penalty, num_return_sequences=returned
    )


@attrs.frozen(kw_only=True)
class BeamOptions:
    num_beams: int = charseq.option(2, help="sequences kept at each step", min=1)


class _Plugin:
    @charseq.hookimpl
    def charseq_register_samplers(self, registry):
        registry.add("greedy", ArgMin)
        registry.add("global-rng", GlobalRng)
        registry.add("unsorted-beam", UnsortedBeam, options=BeamOptions)

    @charseq.hookimpl
    def charseq_register_cells(self, registry):
        registry.add("leaky", LeaksAcrossRows)
        registry.add("elman", ElmanCell)


TOYS = Registry()
TOYS.register(_Plugin(), "toys")


@pytest.mark.parametrize(
    ("sampler", "check", "message"),
    [
        (TOYS.get("sampler", "greedy"), check_greedy_is_argmax, "arg-max at every step"),
        (TOYS.get("sampler", "global-rng"), check_sampler_reproducible, "generator seed"),
        (TopKOffByOne, check_top_k_support, "outside the top 3"),
        (PadsWithMasked, check_masked_ids_never_sampled, "whose logits are -inf"),
        (TOYS.get("sampler", "unsorted-beam"), check_beam_scores, "not sorted best first"),
        (AbsoluteMinP, check_min_p_support, "should occur"),
        (SignBlindPenalty, check_repetition_penalty, "on negative logits"),
        (InterleavedBeams, check_num_return_sequences, "alone it gets"),
        (lax_beam, check_num_return_sequences, "num_return_sequences=3 was accepted"),
        (UnpenalisedBeamScores, check_beam_length_penalty, "length_penalty=1.0"),
        (ClaimsDeterminism, check_deterministic_sampler_ignores_the_generator, "seeds 0 and 7"),
        (FloatIds, check_sampled_ids_in_vocab, "chose ids of dtype torch.float32"),
        (OffTheEnd, check_sampled_ids_in_vocab, "chose ids [11] outside the vocabulary range(11)"),
        (ArgMaxPlusOne, check_masked_ids_never_sampled, "sampled ids [1], whose logits are -inf"),
        (ArgMaxPlusOne, check_sampled_ids_in_vocab, "chose ids [11] outside the vocabulary"),
    ],
    ids=[
        "argmin-greedy",
        "global-rng",
        "top-k-off-by-one",
        "pads-with-masked",
        "unsorted-beam",
        "absolute-min-p",
        "sign-blind-penalty",
        "interleaved-beams",
        "lax-num-return-sequences",
        "unpenalised-beam-scores",
        "claims-determinism",
        "float-ids",
        "off-the-end",
        "arg-max-plus-one-masked",
        "arg-max-plus-one-in-vocab",
    ],
)
def test_kit_rejects_broken_sampler(sampler, check, message):
    with pytest.raises(CheckError, match="How to fix") as caught:
        check(sampler)
    assert message in str(caught.value)


# -- the runners ----------------------------------------------------------------------------------


def test_the_kit_blames_a_sampler_that_picks_masked_ids_and_says_how_to_fix_it():
    message = str(pytest.raises(CheckError, check_component, ArgMaxPlusOne).value)
    assert "check_masked_ids_never_sampled failed for" in message
    assert "ArgMaxPlusOne" in message
    assert "How to fix: turn logits into probabilities with softmax" in message


def test_parametrize_with_checks_ids_and_marks():
    mark = parametrize_with_checks(
        [TOYS.get("cell", "leaky")],
        expected_failed_checks={"cell:leaky": {"check_batch_independence": "mixes rows"}},
    )
    names, params = mark.args
    assert names == ("component", "check")
    by_id = {p.id: p for p in params}
    assert list(by_id) == [f"cell:leaky-{c.__name__}" for c in all_checks("cell")]
    (xfail,) = by_id["cell:leaky-check_batch_independence"].marks
    assert xfail.name == "xfail" and xfail.kwargs["reason"] == "mixes rows"
    (skip,) = by_id["cell:leaky-check_fused_matches_step"].marks
    assert skip.name == "skip" and "fused `forward`" in skip.kwargs["reason"]
    assert not by_id["cell:leaky-check_shapes"].marks


@parametrize_with_checks(
    [TOYS.get("cell", "leaky")],
    expected_failed_checks={"cell:leaky": {"check_batch_independence": "mixes rows on purpose"}},
)
def test_expected_failures_are_xfailed(component, check):
    check(component)


def test_expected_failed_checks_typos_are_errors():
    leaky = TOYS.get("cell", "leaky")
    with pytest.raises(ValueError, match="did you mean 'check_batch_independence'"):
        parametrize_with_checks([leaky], {"cell:leaky": {"check_batch_independance": "x"}})
    with pytest.raises(ValueError, match="not among the components"):
        parametrize_with_checks([leaky], {"cell:leak": {"check_shapes": "x"}})
    with pytest.raises(ValueError, match="kind:name"):
        parametrize_with_checks(["leaky"])


def test_check_component_reports_and_raises():
    outcomes = check_component(TOYS.get("cell", "elman"))
    assert outcomes["check_gradcheck"] == "passed"
    assert outcomes["check_fused_matches_step"].startswith("skipped:")
    leaky = TOYS.get("cell", "leaky")
    with pytest.raises(CheckError, match=r"(?s)1 of \d+ checks failed .*check_batch_independence"):
        check_component(leaky)
    outcomes = check_component(leaky, {"check_batch_independence": "mixes rows"})
    assert outcomes["check_batch_independence"] == "expected failure: mixes rows"


def test_check_component_takes_a_bare_factory_while_one_is_being_written():
    elman, leaky = TOYS.get("cell", "elman").factory, TOYS.get("cell", "leaky").factory
    assert isinstance(elman, type)  # a Cell subclass says its kind
    assert check_component(elman)["check_gradcheck"] == "passed"
    with pytest.raises(CheckError, match=r"(?s)1 of \d+ checks failed .*check_batch_independence"):
        check_component(lambda i, h: leaky(i, h), kind="cell")
    with pytest.raises(TypeError, match="cannot tell which kind"):
        check_component(lambda i, h: leaky(i, h))


class Damped(ElmanCell):
    """An Elman cell with an option: its new state is scaled by ``damping``."""

    def __init__(self, input_size, hidden_size, damping=1.0):
        super().__init__(input_size, hidden_size)
        self.damping = damping

    def step(self, x_t, state):
        h, _ = super().step(x_t, state)
        h = h * self.damping
        return h, (h,)


def test_parametrize_with_checks_names_a_factory_with_its_options():
    mark = parametrize_with_checks([functools.partial(Damped, damping=0.5)])  # kind from the class
    first = all_checks("cell")[0].__name__
    assert mark.args[1][0].id == f"cell:Damped(damping=0.5)-{first}"
    with pytest.raises(TypeError, match="pass kind='cell'"):
        parametrize_with_checks([lambda i, h: Damped(i, h)])
    lambdas = parametrize_with_checks([lambda i, h: Damped(i, h)], kind="cell")
    assert len(lambdas.args[1]) == len(all_checks("cell"))


@parametrize_with_checks([functools.partial(Damped, damping=0.5)])
def test_a_factory_with_options_other_than_the_defaults_passes_the_kit(component, check):
    check(component)


def test_without_the_testing_extra_the_kit_says_how_to_install_it():
    import subprocess
    import sys

    code = "import sys; sys.modules['hypothesis'] = None; import charseq.testing"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "charseq.testing needs the 'testing' extra" in done.stderr
    assert 'pip install "charseq[testing]"' in done.stderr


def test_check_plugin_installed():
    registered = {f"{c.kind}:{c.name}" for c in check_plugin_installed("charseq")}
    assert {"cell:lstm", "tokenizer:char", "sampler:beam"} <= registered
    with pytest.raises(CheckError, match="not installed"):
        check_plugin_installed("charseq-no-such-plugin")


def test_a_qualified_name_names_a_component_to_check():
    from charseq.testing._base import resolve

    assert resolve("cell:charseq-mgu:mgu").owner.distribution == "charseq-mgu"
    assert resolve("charseq:lstm", "cell").owner.distribution == "charseq"
