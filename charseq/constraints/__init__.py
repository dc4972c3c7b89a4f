"""Constrained generation: a plugin kind of its own, and the built-in constraints.

Constraints live in the :class:`~charseq.generate.Decoder`, not in the samplers, so they compose
with every sampler plugin (greedy, temperature, beam, or a third party's) without the sampler
knowing: the decoder sets the logits of the ids a constraint forbids to ``-inf`` before any
sampler reads :attr:`Decoder.logits`. Several constraints intersect: an id must pass them all.

Built in (registered through charseq's entry points, like a third party's):

- ``stop``: a sequence ends at the first stop string it produces (searched in the generated text
  only, not in the prime), the stop string *included*, as Hugging Face's ``stop_strings``.
  Sequences of a batch (``num_samples``, or beam search's beams) keep being advanced after they
  stop (the batch moves in lockstep), but their text is cut when decoded; token-by-token
  samplers end early once every sequence has stopped. Beam search ranks whole sequences, so
  with beams the cut is made in the best final sequence.
- ``allowed``: only these characters may be generated (each must be one id of the vocabulary).
- ``acrostic``: the first character of every line is forced, in order: the first line's if
  generation starts at the beginning of a line (an empty prime, or one ending in a newline),
  then, after each newline the model produces, the next head. ``after="，。"`` puts the heads at
  the start of each clause instead (a 藏头诗). Once the heads are used up, the text is free (add
  ``stop=["\\n"]`` ... to end there). A forced step leaves one finite logit, so a sampler
  "chooses" it with probability one.
- ``form``: a verse form (``wujue``, ``qijue``, ``wulv``, ``qilv``) or a template of free
  (``?``) and fixed characters; the text ends when it is filled
  (:mod:`charseq.constraints.forms`).

Everything is checked against the tokenizer and the prime before any generation
(:meth:`Constraints.compile`), and a request that can never be met raises
:class:`GenerationError` with a specific message. A third party's constraint subclasses
:class:`TextConstraint` (the characters allowed next, given the text so far) or, for speed,
:class:`Constraint` with its own tensors; see ``docs/how-to/write-a-plugin.md``.
"""

from charseq.constraints.base import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)
from charseq.constraints.builtin import Acrostic, Allowed, Stop
from charseq.constraints.compose import (
    CompiledConstraints,
    ConstraintChoice,
    Constraints,
    ConstraintState,
    build_constraint,
)
from charseq.constraints.forms import FORMS, Form, fits, template_of
from charseq.constraints.stops import apply_stop, cut_at_stop, held_back
from charseq.constraints.text import TextConstraint

__all__ = [
    "FORMS",
    "Acrostic",
    "Allowed",
    "CompiledConstraint",
    "CompiledConstraints",
    "Constraint",
    "ConstraintChoice",
    "ConstraintContext",
    "ConstraintState",
    "ConstraintTracker",
    "Constraints",
    "Form",
    "GenerationError",
    "Stop",
    "TextConstraint",
    "apply_stop",
    "build_constraint",
    "cut_at_stop",
    "fits",
    "held_back",
    "template_of",
]
