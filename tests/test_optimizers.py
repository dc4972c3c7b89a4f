"""The built-in optimizers: they build, they descend, and their options are checked."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import nn

from charseq.builtins import optimizers
from charseq.builtins.optimizers import adam, rmsprop, sgd
from charseq.errors import SpecError
from charseq.interfaces import OptimizerFactory
from charseq.options import build_options
from charseq.registry import Registry

TARGET = torch.tensor([1.0, -2.0, 3.0])

EXPECTED = {
    "sgd": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": False}),
    "adam": (torch.optim.Adam, {"lr": 2e-3, "betas": (0.9, 0.999), "weight_decay": 0.0}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 2e-3, "alpha": 0.95, "eps": 1e-8}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.1, "eps": 1e-8}),
}


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register(optimizers, "builtin_optimizers")
    return registry


def quadratic_loss(weight: nn.Parameter) -> torch.Tensor:
    return ((weight - TARGET) ** 2).sum()


def build(registry: Registry, name: str, parameters, **data):
    component = registry.get("optimizer", name)
    options = build_options(component.options, data, "optimizer")
    return component.factory(parameters, **attrs.asdict(options, recurse=False))


def test_registered(registry):
    assert registry.names("optimizer") == sorted(EXPECTED)
    for name in EXPECTED:
        assert registry.get("optimizer", name).help


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builds_with_the_documented_defaults(registry, name):
    cls, defaults = EXPECTED[name]
    optimizer = build(registry, name, [nn.Parameter(torch.zeros(3))])
    assert type(optimizer) is cls
    assert isinstance(registry.get("optimizer", name).factory, OptimizerFactory)
    group = optimizer.param_groups[0]
    for key, value in defaults.items():
        assert group[key] == value, key


@pytest.mark.parametrize(
    ("name", "data"),
    [(name, {}) for name in sorted(EXPECTED)]
    + [
        ("sgd", {"momentum": 0.9, "nesterov": True}),
        ("sgd", {"weight_decay": 0.01, "momentum": 0.5}),
        ("adam", {"betas": [0.8, 0.9], "lr": 1e-2}),
        ("rmsprop", {"weight_decay": 1e-4}),
    ],
)
def test_one_step_reduces_a_quadratic_loss(registry, name, data):
    weight = nn.Parameter(torch.zeros(3))
    optimizer = build(registry, name, [weight], **data)
    before = quadratic_loss(weight)
    before.backward()
    optimizer.step()
    assert quadratic_loss(weight).item() < before.item()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_many_steps_keep_descending(registry, name):
    weight = nn.Parameter(torch.zeros(3))
    optimizer = build(registry, name, [weight])
    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = quadratic_loss(weight)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("name", "data", "path", "message"),
    [
        ("sgd", {"lr": 0}, "optimizer.lr", "must be > 0.0, got 0.0"),
        ("adam", {"lr": -1e-3}, "optimizer.lr", "must be > 0.0"),
        ("adam", {"lr": float("nan")}, "optimizer.lr", "must be a finite number"),
        ("adam", {"lr": float("inf")}, "optimizer.lr", "must be a finite number, got inf"),
        ("adam", {"lr": "fast"}, "optimizer.lr", "expected float"),
        ("adam", {"lrr": 0.1}, "optimizer.lrr", "did you mean 'lr'"),
        ("adam", {"betas": [0.9, 1.0]}, "optimizer.betas", "must be < 1.0"),
        ("adamw", {"betas": [0.9]}, "optimizer.betas", "expected 2 values"),
        ("adam", {"eps": 0.0}, "optimizer.eps", "must be > 0.0"),
        ("adamw", {"weight_decay": -0.1}, "optimizer.weight_decay", "must be >= 0.0"),
        ("sgd", {"momentum": 1.0}, "optimizer.momentum", "must be < 1.0"),
        ("sgd", {"nesterov": 1}, "optimizer.nesterov", "expected bool"),
        ("rmsprop", {"alpha": 1.0}, "optimizer.alpha", "must be < 1.0"),
        ("adagrad", {"eps": -1.0}, "optimizer.eps", "must be > 0.0"),
    ],
)
def test_option_errors_name_the_option(registry, name, data, path, message):
    with pytest.raises(SpecError, match=message) as caught:
        build_options(registry.get("optimizer", name).options, data, "optimizer")
    assert caught.value.path == path


def test_nesterov_needs_momentum(registry):
    options = registry.get("optimizer", "sgd").options
    with pytest.raises(SpecError, match="nesterov=True needs momentum > 0") as caught:
        build_options(options, {"nesterov": True}, "optimizer")
    assert caught.value.path.startswith("optimizer")
    assert build_options(options, {"nesterov": True, "momentum": 0.9}, "optimizer").nesterov
    with pytest.raises(SpecError, match="nesterov=True needs momentum"):
        sgd([nn.Parameter(torch.zeros(1))], nesterov=True)


def test_direct_calls_are_checked_and_accept_lists():
    parameters = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(SpecError, match=r"^adam\.lr: must be > 0"):
        adam(parameters, lr=-1.0)
    with pytest.raises(SpecError, match=r"^rmsprop\.alpha"):
        rmsprop(parameters, alpha=2.0)
    with pytest.raises(SpecError, match=r"^adam\.lrr: unknown option.*did you mean 'lr'"):
        adam(parameters, lrr=0.1)
    assert adam(parameters, betas=[0.5, 0.6]).param_groups[0]["betas"] == (0.5, 0.6)
    groups = [{"params": parameters, "lr": 0.5}]
    assert sgd(groups).param_groups[0]["lr"] == 0.5  # parameter groups pass through
