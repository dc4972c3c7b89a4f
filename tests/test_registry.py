"""The plugin registry: entry-point loading, owners, failures, switches and clashes."""

from __future__ import annotations

import json
import textwrap
import types

import attrs
import pytest
import torch
from click.testing import CliRunner

import charseq
from charseq.cli import cli
from charseq.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from charseq.loop import unroll
from charseq.registry import Owner, Registry, reset_registry
from charseq.testing import ElmanCell

EXPECTED = {
    "tokenizer": {"char", "byte", "word"},
    "cell": {"rnn", "lstm", "gru"},
    "optimizer": {"sgd", "adam", "adamw", "rmsprop", "adagrad"},
    "sampler": {"greedy", "temperature", "beam"},
}


def make_distribution(root, dist, modules, entry_points):
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {module}" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[charseq]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import charseq
    from charseq.builtins.cells import GRUCell

    @charseq.hookimpl
    def charseq_register_cells(registry):
        registry.add("fancy", GRUCell, help="a GRU under another name")
"""


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A distribution with a working plugin and one that raises on import."""
    make_distribution(
        tmp_path,
        "charseq-thirdparty",
        {"good_plugin": GOOD_PLUGIN, "broken_plugin": "raise ImportError('no module named nope')"},
        {"good": "good_plugin", "broken": "broken_plugin"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for var in ("CHARSEQ_STRICT_PLUGINS", "CHARSEQ_DISABLE_PLUGINS", "CHARSEQ_ONLY_BUILTINS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_builtins_register_through_entry_points_with_their_owner():
    registry = Registry.load()
    for kind, names in EXPECTED.items():
        assert names <= set(registry.names(kind)), kind
        for name in names:
            owner = registry.get(kind, name).owner
            assert owner.distribution == "charseq"
            assert owner.version == charseq.__version__


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_work(third_party):
    with pytest.warns(UserWarning, match="broken"):
        registry = Registry.load()
    assert registry.get("cell", "fancy").owner.distribution == "charseq-thirdparty"
    assert registry.get("cell", "lstm")  # builtins unaffected
    [failure] = registry.failures
    assert (failure.plugin, failure.distribution, failure.version) == (
        "broken",
        "charseq-thirdparty",
        "1.2.3",
    )
    assert "ImportError: no module named nope" in failure.error
    assert "Traceback" in failure.traceback


def test_strict_mode_reraises(third_party, monkeypatch):
    with pytest.raises(PluginLoadError, match="broken"):
        Registry.load(strict=True)
    monkeypatch.setenv("CHARSEQ_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="ImportError: no module named nope"):
        Registry.load()


def test_tracing_shows_where_a_plugin_failed(third_party, monkeypatch, caplog):
    monkeypatch.setenv("CHARSEQ_TRACE_PLUGINS", "1")
    with pytest.warns(UserWarning, match="broken"):
        Registry.load()
    failed = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failed) == 1 and "Traceback" in failed[0] and "broken_plugin" in failed[0]


def test_block_list_by_argument_and_environment(third_party, monkeypatch):
    registry = Registry.load(block=["broken"])
    assert registry.failures == []
    assert [b.plugin for b in registry.blocked] == ["broken"]
    monkeypatch.setenv("CHARSEQ_DISABLE_PLUGINS", "charseq-thirdparty")
    registry = Registry.load()
    assert {b.plugin for b in registry.blocked} == {"good", "broken"}
    assert "fancy" not in registry.names("cell")


def test_only_builtins(third_party, monkeypatch):
    registry = Registry.load(only_builtins=True)
    assert "fancy" not in registry.names("cell")
    assert registry.failures == []
    assert all(b.reason == "only builtins are loaded" for b in registry.blocked)
    monkeypatch.setenv("CHARSEQ_ONLY_BUILTINS", "yes")
    assert "fancy" not in Registry.load().names("cell")


def test_block_names_compare_as_pip_compares_them_and_a_name_matching_nothing_is_warned(
    third_party,
):
    registry = Registry.load(block=["Charseq_ThirdParty"])  # the distribution charseq-thirdparty
    assert {b.plugin for b in registry.blocked} == {"good", "broken"}
    with pytest.warns(UserWarning, match="names charseq-thirdprty, which no installed plugin"):
        registry = Registry.load(block=["charseq-thirdprty", "broken"])
    assert "fancy" in registry.names("cell")  # the misspelt name blocked nothing


def test_builtins_cannot_be_blocked():
    with pytest.warns(UserWarning, match="charseq's own plugins cannot be blocked"):
        registry = Registry.load(block=["builtin_cells", "charseq"])
    assert {"rnn", "lstm", "gru"} <= set(registry.names("cell"))


def test_a_hook_function_without_the_marker_is_warned_about():
    module = types.ModuleType("forgetful")

    def charseq_register_cells(registry):  # no @charseq.hookimpl
        registry.add("never", lambda input_size, hidden_size: None)

    module.charseq_register_cells = charseq_register_cells
    registry = Registry()
    with pytest.warns(UserWarning, match="defines charseq_register_cells without @charseq"):
        registry.register(module, "forgetful")
    assert "never" not in registry.names("cell")
    strict = Registry(strict=True)
    with pytest.raises(PluginLoadError, match="defines charseq_register_cells without @charseq"):
        strict.register(module, "forgetful")
    assert strict.components() == []


def test_a_spec_naming_a_component_of_a_failed_plugin_quotes_the_failure(third_party):
    with pytest.warns(UserWarning):
        registry = Registry.load()
    with pytest.raises(charseq.SpecError) as caught:
        charseq.PipelineSpec.from_dict({"cell": {"name": "mgu2"}}, registry)
    message = str(caught.value)
    assert message.startswith("cell.name: unknown cell 'mgu2'")
    assert "plugin 'broken' from charseq-thirdparty 1.2.3 failed: ImportError" in message


def _plugin(name, kind_hook, component_name, factory=object, **add):
    def hook(registry):
        registry.add(component_name, factory, **add)

    hook.__name__ = kind_hook
    module = types.ModuleType(name)
    setattr(module, kind_hook, charseq.hookimpl(hook))
    return module


def test_one_distribution_registering_a_name_twice_is_an_error_naming_both_plugins():
    registry = Registry()
    registry.register(_plugin("a", "charseq_register_cells", "twin"), Owner("a", "dist-a", "1.0"))
    with pytest.raises(DuplicateComponentError) as caught:
        registry.register(
            _plugin("b", "charseq_register_cells", "twin"), Owner("b", "dist-a", "1.0")
        )
    assert "plugin 'a'" in str(caught.value) and "plugin 'b'" in str(caught.value)
    assert registry.get("cell", "twin").owner.plugin == "a"  # the second added nothing


@pytest.mark.parametrize("first", ["dist-a", "dist-b"])
def test_two_distributions_clashing_on_a_name_resolve_the_same_way_whatever_the_order(first):
    owners = {d: Owner(d[-1], d, "1.0") for d in ("dist-a", "dist-b")}
    order = [first, *(d for d in owners if d != first)]
    registry = Registry()
    registry.register(_plugin(order[0], "charseq_register_cells", "twin"), owners[order[0]])
    with pytest.warns(UserWarning, match="registered by dist-. 1.0 .* and by dist-. 1.0") as w:
        registry.register(_plugin(order[1], "charseq_register_cells", "twin"), owners[order[1]])
    assert "no plugin keeps the name 'twin'" in str(w[0].message)
    with pytest.raises(DuplicateComponentError) as caught:  # nobody wins the bare name
        registry.get("cell", "twin")
    assert "name one of 'dist-a:twin', 'dist-b:twin'" in str(caught.value)
    assert registry.get("cell", "dist-a:twin").owner.distribution == "dist-a"
    assert registry.get("cell", "Dist_B:twin").owner.distribution == "dist-b"  # as pip compares
    assert registry.names("cell") == ["dist-a:twin", "dist-b:twin"]
    with pytest.raises(charseq.SpecError, match="cell.name: cell 'twin' is registered by"):
        charseq.PipelineSpec.from_dict({"cell": "twin"}, registry)


def test_a_clash_is_refused_in_strict_mode():
    registry = Registry(strict=True)
    registry.register(_plugin("a", "charseq_register_cells", "twin"), Owner("a", "dist-a", "1.0"))
    with pytest.raises(DuplicateComponentError, match="dist-a 1.0 .* and by dist-b 2.0"):
        registry.register(
            _plugin("b", "charseq_register_cells", "twin"), Owner("b", "dist-b", "2.0")
        )
    assert registry.get("cell", "twin").owner.distribution == "dist-a"
    assert registry.names("cell") == ["twin"]


SHADOWING_PLUGIN = """
    import charseq
    from charseq.builtins.cells import GRUCell

    @charseq.hookimpl
    def charseq_register_cells(registry):
        registry.add("lstm", GRUCell, help="a GRU that wants to be the lstm")
"""


@pytest.fixture
def shadowing(tmp_path, monkeypatch):
    """A distribution whose plugin registers a cell named like a built-in."""
    make_distribution(
        tmp_path, "charseq-shadow", {"shadow_plugin": SHADOWING_PLUGIN}, {"shadow": "shadow_plugin"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for var in ("CHARSEQ_STRICT_PLUGINS", "CHARSEQ_DISABLE_PLUGINS", "CHARSEQ_ONLY_BUILTINS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_a_plugin_cannot_take_a_builtins_name(shadowing):
    with pytest.warns(UserWarning) as caught:
        registry = Registry.load()
    [message] = [str(w.message) for w in caught if "'lstm'" in str(w.message)]
    assert "charseq 0.1.0 (plugin 'builtin_cells')" in message
    assert "charseq-shadow 1.2.3 (plugin 'shadow')" in message
    assert "the built-in keeps the name 'lstm'; name the other 'charseq-shadow:lstm'" in message
    assert registry.get("cell", "lstm").owner.distribution == "charseq"
    assert registry.get("cell", "charseq:lstm").owner.distribution == "charseq"
    assert registry.get("cell", "charseq-shadow:lstm").owner.distribution == "charseq-shadow"
    assert {"lstm", "charseq-shadow:lstm"} <= set(registry.names("cell"))
    with pytest.raises(PluginLoadError, match="charseq-shadow.*DuplicateComponentError"):
        Registry.load(strict=True)


def test_a_qualified_name_round_trips_through_specs_and_checkpoints(shadowing, tmp_path):
    from charseq import Pipeline
    from charseq.builtins.cells import GRUCell

    with pytest.warns(UserWarning, match="'lstm'"):
        registry = Registry.load()
    cell = {"name": "charseq-shadow:lstm", "hidden_size": 8, "num_layers": 1}
    spec = charseq.PipelineSpec.from_dict({"cell": cell, "train": {"steps": 1}}, registry)
    assert spec.to_dict()["cell"]["name"] == "charseq-shadow:lstm"
    assert charseq.PipelineSpec.from_toml(spec.to_toml(), registry) == spec
    pipe = Pipeline.from_spec(spec, registry=registry, device="cpu").fit("abcd " * 40)
    loaded = Pipeline.load(pipe.save(tmp_path / "export"), registry=registry)
    assert loaded.spec.cell.name == "charseq-shadow:lstm"
    assert type(loaded.model.stack.cells[0]) is GRUCell
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["plugins"]["cell"]["distribution"] == "charseq-shadow"


def test_a_checkpoint_loads_its_own_plugins_component_when_another_takes_its_name(
    third_party, tmp_path, monkeypatch
):
    from charseq import Pipeline

    with pytest.warns(UserWarning, match="broken"):
        registry = Registry.load()
    spec = {"cell": {"name": "fancy", "hidden_size": 8, "num_layers": 1}, "train": {"steps": 1}}
    pipe = Pipeline.from_spec(spec, registry=registry, device="cpu").fit("abcd " * 40)
    export = pipe.save(tmp_path / "export")
    rival = tmp_path / "rival"
    rival.mkdir()
    make_distribution(
        rival,
        "charseq-rival",
        {"rival_plugin": GOOD_PLUGIN.replace("GRUCell", "LSTMCell")},
        {"rival": "rival_plugin"},
    )
    monkeypatch.syspath_prepend(str(rival))
    with pytest.warns(UserWarning, match="'fancy' is registered by"):
        both = Registry.load()
    with pytest.raises(DuplicateComponentError):
        both.get("cell", "fancy")
    loaded = Pipeline.load(export, registry=both)
    assert loaded.spec.cell.name == "charseq-thirdparty:fancy"
    assert torch.equal(loaded.model.head.weight, pipe.model.head.weight)


def test_a_plugin_registers_all_its_components_or_none():
    def hook(registry):
        registry.add("first", object)
        raise RuntimeError("half-way")

    module = types.ModuleType("halfway")
    module.charseq_register_samplers = charseq.hookimpl(hook)
    registry = Registry()
    with pytest.raises(RuntimeError):
        registry.register(module, "halfway")
    assert registry.names("sampler") == []


def test_a_plugin_is_registered_once_and_names_are_unique():
    registry = Registry()
    plugin = _plugin("a", "charseq_register_cells", "x")
    registry.register(plugin, "a")
    with pytest.raises(PluginLoadError, match="already registered .as 'a'."):
        registry.register(plugin, "again")
    with pytest.raises(PluginLoadError, match="a plugin named 'a' is already registered"):
        registry.register(_plugin("b", "charseq_register_cells", "y"), "a")
    assert registry.names("cell") == ["x"]


def test_same_name_in_different_kinds_is_fine():
    registry = Registry()
    registry.register(_plugin("a", "charseq_register_cells", "x"), "a")
    registry.register(_plugin("b", "charseq_register_samplers", "x"), "b")
    assert registry.get("cell", "x").owner.plugin == "a"
    assert registry.get("sampler", "x").owner.plugin == "b"


def test_a_misspelled_hook_is_rejected():
    module = types.ModuleType("typo")
    module.charseq_register_cell = charseq.hookimpl(lambda registry: None)
    with pytest.raises(Exception, match="charseq_register_cell"):
        Registry().register(module, "typo")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("Bad Name", None, "use lower-case letters"),
        ("ok", dict, "options must be an attrs class"),
    ],
)
def test_registrar_rejects_bad_registrations(name, options, message):
    module = _plugin("bad", "charseq_register_cells", name, options=options)
    with pytest.raises((ValueError, TypeError), match=message):
        Registry().register(module, "bad")


def test_unknown_names_get_a_suggestion_and_the_list():
    registry = Registry.load()
    with pytest.raises(UnknownComponentError) as caught:
        registry.get("cell", "lstn")
    assert "unknown cell 'lstn'; did you mean 'lstm'? (available: " in str(caught.value)


def _options(name, annotation, default):
    """A frozen options class with one field ``name: annotation = default``."""
    namespace = {"__annotations__": {name: annotation}, name: default}
    return attrs.frozen(kw_only=True)(type("Options", (), namespace))


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("cells", "dropout", "an option cannot be named 'dropout': that is the cell layout"),
        ("cells", "hidden_size", "an option cannot be named 'hidden_size'"),
        ("cells", "input_size", "an option cannot be named 'input_size'"),
        ("samplers", "name", "an option cannot be named 'name'"),
        ("optimizers", "parameters", "an option cannot be named 'parameters'"),
    ],
)
def test_option_names_a_spec_uses_itself_are_refused_at_registration(kind, name, message):
    cls = _options(name, int, charseq.option(1, help="h"))
    registry = Registry(strict=True)
    plugin = _plugin("p", f"charseq_register_{kind}", "thing", lambda *a, **k: None, options=cls)
    with pytest.raises(TypeError, match=message):
        registry.register(plugin, "p")
    assert registry.components() == []  # nothing of the plugin is added


@pytest.mark.parametrize(
    ("annotation", "default", "factory", "message"),
    [
        (
            int,
            charseq.option(0.5, help="h"),
            None,
            "default 0.5, not of its own type: expected int",
        ),
        (list[float], attrs.field(factory=list), None, "which a spec cannot hold"),
        (int, charseq.option(0, help="h", min=1), None, "defaults fail their own checks"),
        (int, charseq.option(1, help="h"), lambda other=1: None, "takes no argument 'opt'"),
        (int, attrs.field(), None, "has no default; every option needs one"),
    ],
)
def test_options_a_spec_cannot_carry_are_refused_at_registration(
    annotation, default, factory, message
):
    cls = _options("opt", annotation, default)
    factory = factory or (lambda opt=None: None)
    plugin = _plugin("p", "charseq_register_samplers", "thing", factory, options=cls)
    with pytest.raises(TypeError, match=message) as caught:
        Registry().register(plugin, "p")
    assert str(caught.value).startswith("sampler 'thing': ")


def test_describe_lists_options_with_defaults_and_help():
    @attrs.frozen(kw_only=True)
    class Options:
        width: int = charseq.option(3, help="how wide", min=1)

    registry = Registry()
    plugin = _plugin("w", "charseq_register_samplers", "wide", lambda width: None, options=Options)
    registry.register(plugin, "w")
    [entry] = registry.describe()["components"]
    assert entry["options"] == [{"name": "width", "type": "int", "default": 3, "help": "how wide"}]
    assert entry["status"] == "loaded"


def test_charseq_plugins_reports_the_failed_plugin(third_party):
    reset_registry()
    try:
        result = CliRunner().invoke(cli, ["plugins", "--json"])
        listing = json.loads(result.stdout)  # the warning goes to stderr, as one plain line
        assert result.stderr.splitlines() == [
            "warning: charseq: plugin 'broken' from charseq-thirdparty 1.2.3 failed: "
            "ImportError: no module named nope"
        ]
        assert [f["plugin"] for f in listing["failed"]] == ["broken"]
        assert "fancy" in {c["name"] for c in listing["components"]}
        reset_registry()
        text = CliRunner().invoke(cli, ["plugins"]).stdout
        assert "failed: plugin 'broken' from charseq-thirdparty 1.2.3" in text
    finally:
        reset_registry()


def test_a_checkpoint_needing_a_missing_plugin_names_the_plugins_that_failed(third_party, tmp_path):
    from charseq import Pipeline
    from charseq.checkpoint import CheckpointError

    with pytest.warns(UserWarning, match="broken"):
        registry = Registry.load()
    spec = {"cell": {"hidden_size": 8, "num_layers": 1}, "train": {"steps": 1, "batch_size": 2}}
    pipe = Pipeline.from_spec(spec, registry=registry, device="cpu").fit("abcd " * 40)
    export = pipe.save(tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["plugins"]["cell"] = {"name": "indrnn", "distribution": "charseq-indrnn"}
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="needs cell 'indrnn' from charseq-indrnn") as error:
        Pipeline.load(export, registry=registry)
    assert "plugins that failed to load: plugin 'broken'" in str(error.value)


def test_an_uninstalled_checkout_is_told_to_install(monkeypatch):
    from charseq.errors import NotInstalledError

    monkeypatch.setattr("charseq.registry.metadata.entry_points", lambda group: [])
    with pytest.raises(NotInstalledError, match="pip install -e ."):
        Registry.load()


def test_a_checkpoint_needing_a_blocked_plugin_says_it_is_blocked(third_party, tmp_path):
    from charseq import Pipeline
    from charseq.checkpoint import CheckpointError

    with pytest.warns(UserWarning, match="broken"):
        registry = Registry.load()
    spec = {"cell": {"name": "fancy", "hidden_size": 8, "num_layers": 1}, "train": {"steps": 1}}
    export = Pipeline.from_spec(spec, registry=registry, device="cpu").fit("abcd " * 40)
    export = export.save(tmp_path / "export")
    blocked = Registry.load(block=["charseq-thirdparty"])
    with pytest.raises(CheckpointError, match="needs cell 'fancy'") as caught:
        Pipeline.load(export, registry=blocked)
    assert "(it is installed but blocked)" in str(caught.value)


def test_a_checkpoint_written_by_another_version_of_a_plugin_is_warned_about(third_party, tmp_path):
    from charseq import Pipeline

    with pytest.warns(UserWarning, match="broken"):
        registry = Registry.load()
    spec = {"cell": {"name": "fancy", "hidden_size": 8, "num_layers": 1}, "train": {"steps": 1}}
    export = Pipeline.from_spec(spec, registry=registry, device="cpu").fit("abcd " * 40)
    export = export.save(tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["plugins"]["cell"]["version"] == "1.2.3"
    manifest["plugins"]["cell"]["version"] = "1.0.0"
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(
        UserWarning, match=r"written with cell 'fancy' from charseq-thirdparty 1\.0\."
    ):
        Pipeline.load(export, registry=registry)


def test_a_tokenizer_state_its_plugin_cannot_load_names_the_checkpoint(tmp_path):
    from charseq import Pipeline
    from charseq.checkpoint import CheckpointError

    spec = {"cell": {"hidden_size": 8, "num_layers": 1}, "train": {"steps": 1}}
    export = Pipeline.from_spec(spec, device="cpu").fit("abcd " * 40).save(tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["tokenizer"] = {"vocab": 3}  # not what the char tokenizer wrote
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="tokenizer 'char' could not load its state"):
        Pipeline.load(export)


def test_a_character_tokenizer_of_a_plugin_scores_in_characters():
    from charseq import Pipeline
    from charseq.builtins.tokenizers import CharTokenizer

    module = types.ModuleType("mychar")

    @charseq.hookimpl
    def charseq_register_tokenizers(registry):
        registry.add("mychar", CharTokenizer)

    module.charseq_register_tokenizers = charseq_register_tokenizers
    registry = Registry.load()
    registry.register(module, "mychar")
    spec = {"tokenizer": "mychar", "cell": {"hidden_size": 8, "num_layers": 1}}
    pipe = Pipeline.from_spec({**spec, "train": {"steps": 1}}, registry=registry, device="cpu")
    summary = pipe.fit("abcd " * 40).score("abcd").summary()
    assert summary.startswith("4 characters: ") and "BPC" in summary


class _Wide(ElmanCell):
    """Its output is twice as wide as its hidden size (the head then cannot take it)."""

    def step(self, x_t, state):
        h, state = super().step(x_t, state)
        return torch.cat([h, h], dim=-1), state


class _StateOfOtherBatch(ElmanCell):
    def step(self, x_t, state):
        h, (new,) = super().step(x_t, state)
        return h, (new[:1],)


class _WideForward(ElmanCell):
    """A right step and a "fused" forward whose output is too wide."""

    def forward(self, x, state=None):
        out, state = unroll(self, x, state)
        return torch.cat([out, out], dim=-1), state


@pytest.mark.parametrize(
    ("cell", "message", "check"),
    [
        (
            _Wide,
            r"step\(x_t \(2, 8\), state\) returned an output of shape \(2, 16\); "
            r"expected \(2, 8\)",
            "check_cell_api",
        ),
        (
            _StateOfOtherBatch,
            r"initial_state\(2\) gave a state \(\(2, 8\)\) and step returned "
            r"\(\(1, 8\)\)",
            "check_cell_api",
        ),
        (
            _WideForward,
            r"forward\(x \(2, 1, 8\)\) returned an output of shape \(2, 1, 16\); "
            r"expected \(2, 1, 8\)",
            "check_shapes",
        ),
    ],
    ids=["wide-output", "state-of-other-batch", "wide-forward"],
)
def test_a_cell_of_wrong_shapes_is_refused_before_training_naming_it_and_the_kit(
    cell, message, check
):
    from charseq import Pipeline
    from charseq.model import CellContractError

    registry = Registry.load()
    registry.register(_plugin("bad", "charseq_register_cells", "bad", cell), "bad")
    spec = {"cell": {"name": "bad", "hidden_size": 8, "num_layers": 2}, "train": {"steps": 2}}
    spec["model"] = {"embedding_size": 8}
    pipe = Pipeline.from_spec(spec, registry=registry, device="cpu")
    with pytest.raises(CellContractError, match=message) as caught:
        pipe.fit("abcd " * 40)  # was torch's "mat1 and mat2 shapes cannot be multiplied"
    text = str(caught.value)
    assert f"cell {cell.__qualname__} (from tests.test_registry; layer 0" in text
    assert f"charseq.testing.{check} catches this" in text


class _Noisy(ElmanCell):
    """Draws from the global generator in every step (as dropout inside a cell does)."""

    def step(self, x_t, state):
        h, state = super().step(x_t, state)
        return h + 0 * torch.rand_like(h), state


def test_the_shape_probe_leaves_the_random_stream_alone():
    from charseq.model import CharModel

    torch.manual_seed(0)
    CharModel(5, 4, [_Noisy(4, 8)])
    after = torch.rand(3)
    torch.manual_seed(0)
    _Noisy(4, 8)
    torch.nn.Embedding(5, 4), torch.nn.Linear(8, 5)
    assert torch.equal(torch.rand(3), after)
