"""A pipeline: tokenizer, model, optimizer and sampler, composed from a spec.

>>> pipe = Pipeline.from_spec({"cell": {"name": "gru", "hidden_size": 32}})   # doctest: +SKIP
>>> pipe.fit(text).generate("ROMEO:", max_new_tokens=200)                      # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from charseq import __version__
from charseq.checkpoint import CheckpointError, read_manifest, read_weights, write_checkpoint
from charseq.errors import CharseqError, SpecError
from charseq.generate import generate_ids
from charseq.interfaces import Sampler, Tokenizer
from charseq.model import CharModel, detach
from charseq.registry import Registry, get_registry
from charseq.spec import ComponentSpec, PipelineSpec

MAX_NEW_TOKENS = 1_000_000
"""The most characters one ``generate`` call makes (a guard against a mistyped length)."""


class Callback:
    """Hooks into :meth:`Pipeline.fit`; override what you need. The loop never prints."""

    def on_fit_start(self, pipeline: Pipeline, steps: int) -> None:
        """Before the first step."""

    def on_step_end(self, pipeline: Pipeline, step: int, metrics: dict[str, float]) -> None:
        """After each optimizer step; ``metrics`` has ``loss`` (nats/char) and ``lr``."""

    def on_fit_end(self, pipeline: Pipeline, step: int) -> None:
        """After the last step."""


class Pipeline:
    """Tokenizer, model, optimizer and sampler, built from one :class:`PipelineSpec`.

    Build with :meth:`from_spec` (then :meth:`fit`) or :meth:`load`.

    Attributes:
        spec: the validated spec.
        tokenizer: the tokenizer (fitted by :meth:`fit` or restored by :meth:`load`).
        model: the :class:`~charseq.model.CharModel`, or ``None`` until the vocabulary is known.
        device: where the model lives.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        tokenizer: Tokenizer,
        model: CharModel | None = None,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model
        self.registry = get_registry() if registry is None else registry
        self.device = torch.device(device) if device is not None else _default_device()
        self.step = 0
        if model is not None:
            model.to(self.device)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_spec(
        cls,
        spec: PipelineSpec | Mapping[str, Any] | str | Path | None = None,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """A pipeline from a spec object, a dict, or a ``.toml`` / ``.json`` file path.

        The spec is validated here, before any data is read or weight allocated.
        """
        registry = get_registry() if registry is None else registry
        if spec is None:
            spec = PipelineSpec.from_dict({}, registry)
        elif isinstance(spec, Mapping):
            spec = PipelineSpec.from_dict(spec, registry)
        elif isinstance(spec, str | Path):
            spec = PipelineSpec.from_file(spec, registry)
        elif not isinstance(spec, PipelineSpec):
            raise TypeError(f"spec must be a PipelineSpec, dict or path, got {type(spec).__name__}")
        tokenizer = _build(registry, "tokenizer", spec.tokenizer)
        return cls(spec, tokenizer, registry=registry, device=device)

    def build_model(self) -> CharModel:
        """A freshly initialised model for the fitted tokenizer's vocabulary."""
        if not self.tokenizer.is_fitted:
            raise CharseqError("the tokenizer has no vocabulary yet: call fit(text) first")
        cell = self.spec.cell
        component = self.registry.get("cell", cell.name)
        sizes = [self.spec.model.embedding_size] + [
            cell.layout.hidden_size
        ] * cell.layout.num_layers
        options = _kwargs(cell.options)
        cells = [
            component.factory(input_size, cell.layout.hidden_size, **options)
            for input_size in sizes[:-1]
        ]
        model = CharModel(
            self.tokenizer.vocab_size, self.spec.model.embedding_size, cells, cell.layout.dropout
        )
        return model.to(self.device)

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        text: str,
        *,
        steps: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> Pipeline:
        """Train on ``text`` with truncated BPTT; returns ``self``.

        The text is cut into ``train.batch_size`` contiguous streams, read ``train.seq_len``
        characters at a time; the hidden state is carried from batch to batch and detached.
        Fits the tokenizer (and builds the model) on first use.

        Args:
            text: the corpus.
            steps: optimizer steps (default: the spec's ``train.steps``).
            callbacks: :class:`Callback` objects told of progress.
        """
        steps = self.spec.train.steps if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not isinstance(text, str) or len(text) < 2:
            raise CharseqError("fit needs a text of at least 2 characters to learn from")
        if self.model is None:
            if not self.tokenizer.is_fitted:
                self.tokenizer.fit(text)
            with torch.random.fork_rng(devices=[]):  # weights from train.seed; global RNG untouched
                torch.manual_seed(self.spec.train.seed)
                self.model = self.build_model()
        data = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        batches = _StreamBatches(data, self.spec.train.batch_size, self.spec.train.seq_len)
        optimizer = _build(self.registry, "optimizer", self.spec.optimizer, self.model.parameters())
        clip = self.spec.train.grad_clip

        model = self.model.train()
        state = None
        for callback in callbacks:
            callback.on_fit_start(self, steps)
        for _ in range(steps):
            x, y, reset = batches.next()
            x, y = x.to(self.device), y.to(self.device)  # (B, T)
            state = None if reset or state is None else detach(state)
            logits, state = model(x, state)  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            self.step += 1
            metrics = {"loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]}
            for callback in callbacks:
                callback.on_step_end(self, self.step, metrics)
        for callback in callbacks:
            callback.on_fit_end(self, self.step)
        return self

    @torch.no_grad()
    def evaluate(self, text: str, chunk_size: int = 8192) -> dict[str, float]:
        """Mean cross-entropy of ``text`` under the model: ``{"nats": ..., "bpc": ...}``.

        The text is read in chunks of ``chunk_size`` tokens with the state carried across, so
        every token after the first is predicted from all that precede it, in bounded memory.
        """
        model = self._require_model()
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long, device=self.device)
        if ids.numel() < 2:
            raise CharseqError("evaluate needs a text of at least 2 tokens")
        was_training = model.training
        model.eval()
        total, state = 0.0, None
        for start in range(0, ids.numel() - 1, chunk_size):
            x = ids[start : start + chunk_size]
            y = ids[start + 1 : start + 1 + chunk_size]
            logits, state = model(x[None, : y.numel()], state)  # (1, n, V)
            total += torch.nn.functional.cross_entropy(logits[0], y, reduction="sum").item()
        model.train(was_training)
        nats = total / (ids.numel() - 1)
        return {"nats": nats, "bpc": nats / math.log(2)}

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: Sampler | str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        num_samples: int | None = None,
    ) -> str | list[str]:
        """Continue ``prime`` by ``max_new_tokens`` tokens.

        Args:
            prime: text to start from (consumed in one pass); empty starts from uniform odds.
            max_new_tokens: how many tokens to add (at most :data:`MAX_NEW_TOKENS`).
            sampler: the spec's sampler if ``None``; else a name (``"greedy"``), a dict
                (``{"name": "temperature", "temperature": 0.8}``) or a :class:`Sampler`.
            seed: makes the output reproducible on the same device.
            num_samples: when given, return a list of this many samples, made as one batch.

        Returns:
            The generated text (without the prime), or a list of texts if ``num_samples`` is set.
        """
        model = self._require_model()
        if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(
                f"max_new_tokens must be in [0, {MAX_NEW_TOKENS}], got {max_new_tokens}"
            )
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        sampler_object = self._sampler(sampler)
        prime_ids = torch.tensor(self.tokenizer.encode(prime), dtype=torch.long)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        out = generate_ids(
            model, prime_ids, sampler_object, max_new_tokens, num_samples or 1, generator
        )
        texts = [self.tokenizer.decode(row.tolist()) for row in out.ids]
        return texts if num_samples is not None else texts[0]

    def _sampler(self, sampler: Sampler | str | Mapping[str, Any] | None) -> Sampler:
        if isinstance(sampler, Sampler):
            return sampler
        if sampler is None:
            return _build(self.registry, "sampler", self.spec.sampler)
        section = {"name": sampler} if isinstance(sampler, str) else dict(sampler)
        spec = PipelineSpec.from_dict({"sampler": section}, self.registry).sampler
        return _build(self.registry, "sampler", spec)

    # -- saving -------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write a checkpoint directory (safetensors weights + JSON manifest), atomically."""
        model = self._require_model()
        manifest = {
            "charseq_version": __version__,
            "spec": self.spec.to_dict(),
            "tokenizer": self.tokenizer.state_dict(),
            "vocab_size": self.tokenizer.vocab_size,
            "step": self.step,
            "plugins": self._owners(),
        }
        return write_checkpoint(directory, model, manifest)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """Rebuild a pipeline from a checkpoint directory; tensors load on the CPU first."""
        registry = get_registry() if registry is None else registry
        manifest = read_manifest(directory)
        spec_data = manifest.get("spec", {})
        _check_plugins_present(registry, manifest)
        try:
            spec = PipelineSpec.from_dict(spec_data, registry)
        except SpecError as error:
            raise CheckpointError(f"{directory}: its spec no longer validates: {error}") from None
        pipe = cls.from_spec(spec, registry=registry, device="cpu")
        pipe.tokenizer.load_state_dict(manifest["tokenizer"])
        model = pipe.build_model()
        try:
            model.load_state_dict(read_weights(directory))
        except RuntimeError as error:
            raise CheckpointError(f"{directory}: weights do not fit the spec: {error}") from None
        pipe.model = model
        pipe.step = int(manifest.get("step", 0))
        pipe.device = torch.device(device) if device is not None else _default_device()
        model.to(pipe.device)
        return pipe

    def _owners(self) -> dict[str, dict[str, str]]:
        owners = {}
        for kind in ("tokenizer", "cell", "optimizer", "sampler"):
            section: ComponentSpec = getattr(self.spec, kind)
            owner = self.registry.get(kind, section.name).owner
            owners[kind] = {"name": section.name, **attrs.asdict(owner)}
        return owners

    def _require_model(self) -> CharModel:
        if self.model is None:
            raise CharseqError("this pipeline has no model yet: call fit(text) or Pipeline.load()")
        return self.model

    def __repr__(self) -> str:
        cell = self.spec.cell
        return (
            f"Pipeline(tokenizer={self.spec.tokenizer.name!r}, cell={cell.name!r} "
            f"{cell.layout.num_layers}x{cell.layout.hidden_size}, "
            f"optimizer={self.spec.optimizer.name!r}, sampler={self.spec.sampler.name!r}, "
            f"fitted={self.model is not None})"
        )


class _StreamBatches:
    """Truncated-BPTT batches: B contiguous streams, read T tokens at a time.

    ``next()`` returns ``(x, y, reset)``: inputs and targets of shape ``(B, T)`` and whether the
    streams started over (so the carried state must be reset).
    """

    def __init__(self, data: Tensor, batch_size: int, seq_len: int) -> None:
        batch_size, seq_len = _fit_batch_to_data(len(data), batch_size, seq_len)
        length = (len(data) - 1) // batch_size  # tokens per stream, leaving one for the target
        self.x = data[: batch_size * length].view(batch_size, length)  # (B, L)
        self.y = data[1 : batch_size * length + 1].view(batch_size, length)  # (B, L)
        self.seq_len = seq_len
        self.position = 0

    def next(self) -> tuple[Tensor, Tensor, bool]:
        reset = self.position == 0
        end = self.position + self.seq_len
        x, y = self.x[:, self.position : end], self.y[:, self.position : end]
        self.position = 0 if end + self.seq_len > self.x.shape[1] else end
        return x, y, reset


def _fit_batch_to_data(n_tokens: int, batch_size: int, seq_len: int) -> tuple[int, int]:
    """Shrink batch size, then sequence length, until one batch fits; warn when it does."""
    needed = batch_size * seq_len + 1
    if n_tokens >= needed:
        return batch_size, seq_len
    if n_tokens < 2:
        raise CharseqError(f"the corpus has {n_tokens} token(s); training needs at least 2")
    new_batch = max(1, min(batch_size, (n_tokens - 1) // seq_len))
    new_seq = min(seq_len, (n_tokens - 1) // new_batch)
    warnings.warn(
        f"the corpus ({n_tokens} tokens) is smaller than one batch of {batch_size}x{seq_len}; "
        f"training with batch_size={new_batch}, seq_len={new_seq}",
        stacklevel=4,
    )
    return new_batch, new_seq


def _build(registry: Registry, kind: str, section: ComponentSpec, *args: Any) -> Any:
    component = registry.get(kind, section.name)
    return component.factory(*args, **_kwargs(section.options))


def _kwargs(options: Any) -> dict[str, Any]:
    """An options instance as the keyword arguments of its component's factory."""
    return attrs.asdict(options, recurse=False)


def _check_plugins_present(registry: Registry, manifest: dict[str, Any]) -> None:
    for kind, owner in manifest.get("plugins", {}).items():
        name = owner.get("name")
        if name not in registry.names(kind):
            raise CheckpointError(
                f"this checkpoint needs {kind} {name!r} from {owner.get('distribution')} "
                f"{owner.get('version')}: install the plugin that provides {kind} {name!r}"
            )


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
