"""The SDK reference is complete and its examples run: every public name of ``hub.connector`` has
a section in docs/sdk.md (every action field and Connector/Context member named in it), and the
``python`` blocks of docs/sdk.md and docs/plugins.md execute, in order, one namespace per page."""
import dataclasses
import re
from pathlib import Path

import pytest

import hub.connector
from hub.connector import Connector, Context
from hub.core import actions

ROOT = Path(__file__).resolve().parents[1]
SDK = (ROOT / "docs" / "sdk.md").read_text()
PUBLIC = list(hub.connector.__all__)


def sections(text: str) -> dict[str, str]:
    """``### `Name(...)` `` headings → the text up to the next heading."""
    found = {}
    for match in re.finditer(r"^#{2,4} `([A-Za-z_]\w*)[^\n]*\n(.*?)(?=^#{2,4} |\Z)", text, re.M | re.S):
        found.setdefault(match.group(1), match.group(2))
    return found


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_every_public_name_has_a_section():
    documented = sections(SDK)
    missing = [name for name in PUBLIC if name not in documented]
    assert not missing, f"docs/sdk.md has no '### `Name…`' section for {missing}"
    for name in PUBLIC:
        assert len(documented[name].strip()) > 40, f"the section of {name} says almost nothing"


@pytest.mark.parametrize("name", [n for n in PUBLIC if dataclasses.is_dataclass(getattr(actions, n, None))])
def test_every_action_field_is_in_its_section(name):
    heading = re.search(rf"^### `{name}\((.*)\)`", SDK, re.M)
    assert heading, f"the heading of {name} shows no signature"
    text = heading.group(1) + " " + sections(SDK)[name]
    own = [f.name for f in dataclasses.fields(getattr(actions, name))]
    base = [f.name for f in dataclasses.fields(actions.SendTemplate)] if issubclass(
        getattr(actions, name), actions.SendTemplate) and name != "SendTemplate" else []
    missing = [f for f in own if f not in base and not re.search(rf"\b{f}\b", text)]
    assert not missing, f"{name}: fields {missing} are not documented"


def test_connector_and_context_members_are_documented():
    connector, context = sections(SDK)["Connector"], sections(SDK)["Context"]
    members = [n for n in vars(Connector) if not n.startswith("_")] + ["name"]
    assert [m for m in members if f"`{m}" not in connector] == []
    fields = [f.name for f in dataclasses.fields(Context)] + ["phone"]
    assert [f for f in fields if f"`{f}`" not in context and f"`{f}(" not in context] == []


def test_every_public_name_is_exported():
    for name in PUBLIC:
        assert hasattr(hub.connector, name), name


@pytest.mark.parametrize("page", ["sdk.md", "plugins.md"])
def test_the_python_examples_run(page, coexhub_runtime):
    blocks = python_blocks((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} has no python examples"
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_')}"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/{page} block {number}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/{page}, python block {number} fails: {exc!r}\n{block}") from exc


def test_the_conformance_example_is_the_one_the_example_plugin_runs():
    plugins = (ROOT / "docs" / "plugins.md").read_text()
    [block] = [b for b in python_blocks(plugins) if "ConnectorConformance)" in b]
    example_tests = (ROOT / "examples" / "coexhub-hello" / "tests" / "test_hello.py").read_text()
    body = block[block.index("class "):].strip()
    code = [line.split("  #")[0].rstrip() for line in body.splitlines()]
    assert all(line in example_tests for line in code), "docs/plugins.md's conformance example drifted " \
                                                        "from examples/coexhub-hello/tests"


def test_hookimpl_comes_with_the_star_import():
    assert "hookimpl" in PUBLIC


def test_the_test_kit_example_passes_against_the_reference_connector(tmp_path):
    """docs/plugins.md's test, run by pytest against docs/sdk.md's Clinic connector."""
    from tests.test_sdk_examples import redis_servers_under, run_pytest

    [connector] = [b for b in python_blocks(SDK) if "class Clinic(Connector)" in b]
    [test] = [b for b in python_blocks((ROOT / "docs" / "plugins.md").read_text()) if "def test_" in b]
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "docs_clinic.py").write_text("from hub.connector import *\n" + connector)
    (tmp_path / "suite" / "conftest.py").write_text(
        "import pytest\nimport docs_clinic\n\n\n@pytest.fixture(scope='session')\n"
        "def coexhub_extra_plugins():\n    return [docs_clinic]\n")
    (tmp_path / "suite" / "test_docs_example.py").write_text(test)
    done = run_pytest(tmp_path / "suite", tmp_path, [])
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-4000:] + done.stderr[-4000:]
    assert redis_servers_under(tmp_path) == []


def test_every_test_kit_fixture_is_documented():
    import inspect

    from hub.testing import plugin

    docs = (ROOT / "docs" / "plugins.md").read_text()
    kit = docs[docs.index("## Testing a plugin"):]
    names = [name for name, obj in inspect.getmembers(plugin)
             if not name.startswith("_") and (type(obj).__name__ == "FixtureFunctionDefinition"  # pytest 8.4+
                                              or hasattr(obj, "_pytestfixturefunction"))]
    assert {"simulator", "coexistence", "run_scheduler", "sends", "run_jobs", "client"} <= set(names), names
    assert [n for n in names if f"`{n}`" not in kit] == []
