"""charseq: pluggable character-level sequence models on PyTorch.

The public API is small: compose a :class:`Pipeline` from a :class:`PipelineSpec`, or write a
plugin against the four interfaces (:class:`Tokenizer`, :class:`Cell`, :class:`OptimizerFactory`,
:class:`Sampler`) and register it with ``@charseq.hookimpl``.
"""

__version__ = "0.1.0"

from charseq.callbacks import Callback
from charseq.errors import CharseqError, SpecError
from charseq.hookspecs import hookimpl
from charseq.interfaces import (
    Cell,
    OptimizerFactory,
    Sampler,
    SamplerOutput,
    State,
    Tokenizer,
    TokenSampler,
)
from charseq.options import option
from charseq.pipeline import Pipeline
from charseq.registry import Registry, get_registry
from charseq.spec import PipelineSpec

__all__ = [
    "Callback",
    "Cell",
    "CharseqError",
    "OptimizerFactory",
    "Pipeline",
    "PipelineSpec",
    "Registry",
    "Sampler",
    "SamplerOutput",
    "SpecError",
    "State",
    "TokenSampler",
    "Tokenizer",
    "get_registry",
    "hookimpl",
    "option",
]
