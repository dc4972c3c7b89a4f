"""The built-in optimizers: factories over ``torch.optim``, each made from its options class.

The defaults follow the projects charseq rebuilds: ``rmsprop`` is char-rnn's (lr 2e-3, decay
0.95), ``adagrad`` is min-char-rnn's (lr 0.1), ``adamw`` is nanoGPT's (lr 1e-3, betas
(0.9, 0.99), weight decay 0.1). Each factory is called as ``factory(parameters, **options)``
and checks its options through the same class a spec uses, so a direct call with a bad value
gets the same error, e.g. ``adam.lr: must be > 0.0, got -1.0``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from charseq.hookspecs import hookimpl
from charseq.interfaces import OptimizerFactory
from charseq.options import OptionError, build_options, option

if TYPE_CHECKING:
    from charseq.registry import Registrar

Parameters = Iterable[nn.Parameter] | Iterable[dict[str, Any]]


def _lr(default: float) -> Any:
    return option(default, help="learning rate", min=0.0, min_exclusive=True)


def _eps(default: float, help: str = "added to the denominator for numerical stability") -> Any:
    return option(default, help=help, min=0.0, min_exclusive=True)


def _weight_decay(default: float, help: str = "L2 penalty added to the gradient") -> Any:
    return option(default, help=help, min=0.0)


def _betas(default: tuple[float, float]) -> Any:
    return option(
        default,
        help="decay rates of the running averages of the gradient and its square",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )


def _nesterov_needs_momentum(instance: Any, attribute: attrs.Attribute, value: bool) -> None:
    # attrs runs validators once every field is set, so the momentum is known here.
    if value and instance.momentum == 0:
        raise OptionError(
            attribute.name,
            "nesterov=True needs momentum > 0 (Nesterov momentum with no momentum is plain "
            "SGD); set momentum, e.g. 0.9, or nesterov=False",
        )


@attrs.frozen(kw_only=True)
class SGDOptions:
    """Options of ``sgd``."""

    lr: float = _lr(0.1)
    momentum: float = option(
        0.0, help="momentum factor (0: none)", min=0.0, max=1.0, max_exclusive=True
    )
    nesterov: bool = option(
        False, help="use Nesterov momentum (needs momentum > 0)", validator=_nesterov_needs_momentum
    )
    weight_decay: float = _weight_decay(0.0)


@attrs.frozen(kw_only=True)
class AdamOptions:
    """Options of ``adam``."""

    lr: float = _lr(2e-3)
    betas: tuple[float, float] = _betas((0.9, 0.999))
    eps: float = _eps(1e-8)
    weight_decay: float = _weight_decay(0.0)


@attrs.frozen(kw_only=True)
class AdamWOptions:
    """Options of ``adamw`` (nanoGPT's defaults)."""

    lr: float = _lr(1e-3)
    betas: tuple[float, float] = _betas((0.9, 0.99))
    eps: float = _eps(1e-8)
    weight_decay: float = _weight_decay(0.1, help="decoupled weight decay (AdamW)")


@attrs.frozen(kw_only=True)
class RMSpropOptions:
    """Options of ``rmsprop`` (char-rnn's defaults)."""

    lr: float = _lr(2e-3)
    alpha: float = option(
        0.95,
        help="decay rate of the running average of the squared gradient",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )
    eps: float = _eps(1e-8)
    weight_decay: float = _weight_decay(0.0)


@attrs.frozen(kw_only=True)
class AdagradOptions:
    """Options of ``adagrad`` (min-char-rnn's defaults)."""

    lr: float = _lr(0.1)
    eps: float = _eps(1e-8)
    weight_decay: float = _weight_decay(0.0)


def _factory(
    optimizer: type[torch.optim.Optimizer], options: type, name: str, doc: str
) -> OptimizerFactory:
    """A factory ``name(parameters, **options)``: checks the options, then builds ``optimizer``.

    The options class is the single source of the names and defaults; a bad value raises
    SpecError ``name.option`` (lists become tuples, ints floats, as in a spec).
    """

    def factory(parameters: Parameters, **values: Any) -> torch.optim.Optimizer:
        checked = build_options(options, values, name)
        return optimizer(parameters, **attrs.asdict(checked, recurse=False))

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return factory


sgd = _factory(
    torch.optim.SGD,
    SGDOptions,
    "sgd",
    "Stochastic gradient descent, with optional (Nesterov) momentum.",
)
adam = _factory(
    torch.optim.Adam, AdamOptions, "adam", "Adam (Kingma and Ba, 2015), char-rnn's learning rate."
)
adamw = _factory(
    torch.optim.AdamW,
    AdamWOptions,
    "adamw",
    "AdamW: Adam with decoupled weight decay (nanoGPT's defaults).",
)
rmsprop = _factory(
    torch.optim.RMSprop,
    RMSpropOptions,
    "rmsprop",
    "RMSprop as char-rnn trains: lr 2e-3, decay 0.95, eps outside the square root.",
)
adagrad = _factory(
    torch.optim.Adagrad,
    AdagradOptions,
    "adagrad",
    "Adagrad as min-char-rnn trains: lr 0.1 (torch adds eps outside the square root).",
)


FACTORIES: dict[str, tuple[OptimizerFactory, type]] = {
    "sgd": (sgd, SGDOptions),
    "adam": (adam, AdamOptions),
    "adamw": (adamw, AdamWOptions),
    "rmsprop": (rmsprop, RMSpropOptions),
    "adagrad": (adagrad, AdagradOptions),
}
"""Each built-in optimizer's factory and options class, by name."""


@hookimpl
def charseq_register_optimizers(registry: Registrar) -> None:
    for name, (factory, options) in FACTORIES.items():
        registry.add(name, factory, options=options)
