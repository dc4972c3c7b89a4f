"""The reference pages generated at build time (docs/_ext/charseq_docs.py) are complete.

A one-page Sphinx project uses the three directives; its HTML must name every command and
option of the ``charseq`` CLI, every option of every built-in component and of the spec's fixed
sections, and every check of the conformance kit.
"""

import html
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from charseq.callbacks import Callback
from charseq.cli import cli
from charseq.interfaces import KINDS
from charseq.options import describe_options
from charseq.registry import BUILTIN_DISTRIBUTION, get_registry
from charseq.spec import CellLayout, ModelSpec, TaskSpec, TrainSpec

DOCS = Path(__file__).resolve().parent.parent / "docs"

PAGE = """\
# Reference

```{charseq-cli} charseq.cli:cli
:prog: charseq
```

# Options

```{charseq-options}
:builtins-only:
```

# Checks

```{charseq-checks} cell
```

```{charseq-checks} tokenizer
```

```{charseq-checks} sampler
```

```{charseq-checks} constraint
```
"""

CONF = f"""\
import sys
sys.path.insert(0, {str(DOCS / "_ext")!r})
extensions = ["myst_parser", "charseq_docs"]
source_suffix = {{".md": "markdown"}}
smartquotes = False  # compare help texts as written
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    pytest.importorskip("sphinx", reason='install the docs extra: pip install -e ".[docs]"')
    pytest.importorskip("myst_parser", reason='install the docs extra: pip install -e ".[docs]"')
    root = tmp_path_factory.mktemp("reference")
    (root / "conf.py").write_text(CONF, encoding="utf-8")
    (root / "index.md").write_text(PAGE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(root), str(root / "html")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return (root / "html" / "index.html").read_text("utf-8")


@pytest.fixture(scope="module")
def text(page):
    """The page's text: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def test_every_command_and_option_is_in_the_cli_reference(text):
    ctx = cli.make_context("charseq", [], resilient_parsing=True)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert f"charseq {name}" in text, f"command {name!r} is missing"
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        assert command.get_usage(sub) in text
        for param in command.get_params(sub):
            if isinstance(param, click.Option):
                flags, help_text = param.get_help_record(sub)
                assert flags in text, f"charseq {name}: option {flags!r} is missing"
                assert " ".join(help_text.split()) in text, f"charseq {name} {flags}: help"


def test_every_option_of_every_builtin_component_is_in_the_spec_reference(page, text):
    sections = [TaskSpec, CellLayout, ModelSpec, TrainSpec]
    components = [
        c
        for kind in KINDS
        for c in get_registry().components(kind)
        if c.owner.distribution == BUILTIN_DISTRIBUTION
    ]
    assert components
    for component in components:
        assert f'id="spec-{component.kind}-{component.name}"' in page
    for options in [*sections, *(c.options for c in components)]:
        for option in describe_options(options):
            row = f"{option['name']} {option['type']}"
            assert row in text, f"option {option['name']} of {options.__name__} is missing"
            assert " ".join(option["help"].split()) in text


def test_every_check_is_in_the_checks_table(text):
    from charseq.testing import all_checks

    for check in all_checks():
        assert check.__name__ in text, f"{check.__name__} is missing"


def test_charseq_plugins_shows_each_default_as_the_spec_reference_does(text):
    """`charseq plugins` and the spec reference agree on every default: ``unset`` for None
    (what the reference says an unset default looks like), ``true``, ``"error"``; ``--json``
    keeps JSON's own values (``null``)."""
    import json

    from click.testing import CliRunner

    listing = CliRunner().invoke(cli, ["plugins"]).stdout
    described = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)
    by_name = {(c["kind"], c["name"]): c for c in described["components"]}
    top_k = next(o for o in by_name["sampler", "temperature"]["options"] if o["name"] == "top_k")
    assert top_k["default"] is None  # JSON null
    assert "top_k (int | none, default unset): " in listing
    assert "default None" not in listing
    components = [
        c
        for kind in KINDS
        for c in get_registry().components(kind)
        if c.owner.distribution == BUILTIN_DISTRIBUTION
    ]
    blocks = re.split(r"^  (?=\S)", listing, flags=re.M)  # one per component (and kind)
    listed = {block.split()[0]: block for block in blocks if block.strip()}
    for component in components:
        block = listed[component.name]
        for option in describe_options(component.options):
            name, kind = re.escape(option["name"]), re.escape(option["type"])
            shown = re.search(rf"^ +{name} \({kind}, default (.*?)\): ", block, re.M)
            assert shown, f"{component.name}.{option['name']} is not listed"
            row = f"{option['name']} {option['type']} {shown.group(1)} "
            assert row in text, f"{component.name}: the reference does not show {row!r}"


def test_the_callback_table_lists_every_callback_method():
    """ "Compose pipelines" tables the methods a callback may have; it must not drift from
    ``charseq.Callback`` (it said six when there were seven, then eight)."""
    page = (DOCS / "tutorial" / "compose-pipelines.md").read_text("utf-8")
    tabled = set(re.findall(r"^\| `(on_\w+)\(", page, flags=re.MULTILINE))
    methods = {name for name in vars(Callback) if name.startswith("on_")}
    assert tabled == methods
