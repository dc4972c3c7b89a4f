"""charseq's own constraints, registered through its entry point like a third party's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charseq.constraints.builtin import (
    AcrosticOptions,
    AllowedOptions,
    StopOptions,
    acrostic,
    allowed,
    stop,
)
from charseq.constraints.forms import FormOptions, form
from charseq.hookspecs import hookimpl

if TYPE_CHECKING:
    from charseq.registry import Registrar


@hookimpl
def charseq_register_constraints(registry: Registrar) -> None:
    registry.add("stop", stop, options=StopOptions)
    registry.add("allowed", allowed, options=AllowedOptions)
    registry.add("acrostic", acrostic, options=AcrosticOptions)
    registry.add("form", form, options=FormOptions)
