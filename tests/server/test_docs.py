"""The documentation stays true: the generated catalogs match the specs (`mcp-gateway docs
--check`), a changed spec is reported as drift, and the hand-written pages link to what exists.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from gateway.server.catalog_docs import BEGIN, END, page_name, render_catalog, render_page
from gateway.server.cli import main
from gateway.server.settings_docs import settings_table
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.compiled import CompiledService
from gateway.spec.loader import load_tree
from tests.support import REPO

ROOT = REPO
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])


@pytest.fixture(autouse=True)
def _shipped_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The specs as shipped: no variable turns on the conformance fixtures or moves an upstream."""
    for variable in ("MCP_GATEWAY_CONFORMANCE", "RETENTLY_API_URL", "REFINER_API_URL",
                     "REFINER_AUTH_URL"):
        monkeypatch.delenv(variable, raising=False)


def run(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def service(name: str) -> CompiledService:
    found = load_tree(SHIPPED_SPECS, {}).get(name)
    assert found is not None
    return found


# The checked-in catalogs

def test_the_checked_in_catalog_pages_match_the_specs(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["docs", str(SHIPPED_SPECS), "--out", str(DOCS), "--check"])

    out, err = capsys.readouterr()
    assert err == ""
    assert code == 0
    assert out == f"ok: 3 page(s) in {DOCS} match the specs\n"  # and the settings table


@pytest.mark.parametrize("name", ["retently", "refiner"])
def test_each_shipped_service_has_its_catalog_on_its_own_page(name: str) -> None:
    page = (DOCS / page_name(service(name))).read_text(encoding="utf-8")

    assert page.count(BEGIN) == 1
    assert render_catalog(service(name)) in page


def shipped_copy(root: Path) -> tuple[Path, Path]:
    """A copy of the shipped tree and of the docs pages to change freely."""
    specs, docs = root / "specs", root / "docs"
    shutil.copytree(SHIPPED_SPECS, specs)
    docs.mkdir()
    for name in ("retently.md", "refiner.md"):
        shutil.copy2(DOCS / name, docs / name)
    return specs, docs


def test_a_changed_spec_is_reported_as_drift_naming_the_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs, docs = shipped_copy(tmp_path)
    feedback = specs / "retently" / "feedback.yaml"
    text = feedback.read_text(encoding="utf-8")
    assert "Get one feedback record by id" in text
    feedback.write_text(text.replace("Get one feedback record by id",
                                     "Fetch one feedback record by id"), encoding="utf-8")
    before = (docs / "retently.md").read_text(encoding="utf-8")

    code = run(["docs", str(specs), "--out", str(docs), "--check"])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.splitlines()[0] == (f"{docs / 'retently.md'}: differs from the specs; "
                                   "run `mcp-gateway docs` to update it")
    assert "+| `get_feedback` | read | `feedback:read` | Get feedback | Fetch one" in err
    assert "refiner.md" not in err
    assert (docs / "retently.md").read_text(encoding="utf-8") == before  # --check writes nothing


def test_docs_rewrites_only_the_generated_section_of_a_drifted_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs, docs = shipped_copy(tmp_path)
    feedback = specs / "retently" / "feedback.yaml"
    feedback.write_text(feedback.read_text(encoding="utf-8").replace(
        "Get one feedback record by id", "Fetch one feedback record by id"), encoding="utf-8")
    before = (docs / "retently.md").read_text(encoding="utf-8")

    assert run(["docs", str(specs), "--out", str(docs)]) == 0
    after = (docs / "retently.md").read_text(encoding="utf-8")
    assert run(["docs", str(specs), "--out", str(docs), "--check"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote {docs / 'retently.md'}"
    assert "Fetch one feedback record by id" in after
    assert before.split(BEGIN)[0] == after.split(BEGIN)[0]
    assert before.split(END)[1] == after.split(END)[1]


def test_a_page_missing_from_the_docs_folder_is_drift(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs, docs = shipped_copy(tmp_path)
    (docs / "refiner.md").unlink()

    code = run(["docs", str(specs), "--out", str(docs), "--check"])

    assert code == 1
    assert capsys.readouterr().err.splitlines()[0].startswith(f"{docs / 'refiner.md'}: differs")
    assert not (docs / "refiner.md").exists()


SERVICE = textwrap.dedent("""\
    name: demo
    title: Demo
    endpoint: /demo/mcp
    upstream: {base_url: 'https://api.example.test'}
    scopes: [{name: "items:read", description: "Read items"}, {name: "items:write"}]
    """)
TOOLS = textwrap.dedent("""\
    tools:
      - name: get_item
        title: Get item
        kind: read
        description: "Get one item | with a pipe, an <id> and `a <code> span`."
        scopes: ["items:read"]
        input:
          id: {type: string, required: true}
        request: {method: GET, path: '/items/{id}'}
    """)


def demo_tree(root: Path) -> Path:
    folder = root / "specs" / "demo"
    folder.mkdir(parents=True)
    (folder / "service.yaml").write_text(SERVICE, encoding="utf-8")
    (folder / "items.yaml").write_text(TOOLS, encoding="utf-8")
    return root / "specs"


def test_a_new_service_gets_a_page_of_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "out"

    code = run(["docs", str(demo_tree(tmp_path)), "--out", str(docs)])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {docs / 'demo.md'}", f"1 of 1 page(s) updated in {docs}"]
    page = (docs / "demo.md").read_text(encoding="utf-8")
    assert page.startswith("# Demo (`/demo/mcp`)\n\n## Catalog\n\n" + BEGIN + "\n")
    assert page.endswith(END + "\n")


def test_the_catalog_has_one_row_per_tool_and_scope_with_cells_kept_whole(
        tmp_path: Path) -> None:
    demo = load_tree(demo_tree(tmp_path), {}).services[0]

    catalog = render_catalog(demo)

    assert catalog.splitlines()[0] == ("`/demo/mcp` serves 1 tools (1 read) and 2 scopes. "
                                       "A tool needs every scope listed with it.")
    assert ("| `get_item` | read | `items:read` | Get item | Get one item \\| with a pipe, an "
            "&lt;id> and `a <code> span`. |") in catalog.splitlines()
    assert "| `items:read` | Read items | `get_item` |" in catalog.splitlines()
    assert "| `items:write` |  | none |" in catalog.splitlines()
    assert "### Resources" not in catalog
    assert "### Prompts" not in catalog


@pytest.mark.parametrize(("page", "problem"), [
    (f"# Page\n\n{BEGIN}\nold\n", "BEGIN without END"),
    (f"# Page\n\n{END}\nold\n{BEGIN}\n", "END before BEGIN"),
    (f"# Page\n\n{BEGIN}\n{END}\n{BEGIN}\n{END}\n", "two sections"),
])
def test_a_page_whose_markers_do_not_pair_is_refused(page: str, problem: str) -> None:
    with pytest.raises(ValueError, match="exactly one BEGIN marker"):
        render_page(page, service("refiner"))


def test_a_page_without_markers_gets_the_catalog_appended() -> None:
    page = render_page("# Refiner\n\nHand-written.\n", service("refiner"))

    assert page.startswith("# Refiner\n\nHand-written.\n\n" + BEGIN + "\n")


def test_docs_on_a_broken_tree_fails_with_the_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["docs", str(tmp_path), "--out", str(tmp_path / "out"), "--check"])

    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"1 problem(s) in {tmp_path}"


# The hand-written pages

def test_every_retently_tool_is_in_exactly_one_area() -> None:
    page = (DOCS / "retently.md").read_text(encoding="utf-8")
    areas = page.split("## Tools by area")[1].split("\n## ")[0]

    named = re.findall(r"`([a-z_]+)`", "\n".join(
        line.split("|")[2] for line in areas.splitlines() if line.startswith("| ")
        and not line.startswith(("| area", "|---"))))

    assert sorted(named) == sorted(service("retently").tools)


def test_the_readme_runs_the_inspector_release_the_makefile_pins() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pinned = re.search(r"@modelcontextprotocol/inspector@(\S+)", makefile)
    assert pinned

    versions = set(re.findall(r"@modelcontextprotocol/inspector@(\S+?)[`\s]", readme))

    assert versions == {pinned[1]}


def test_the_readme_quick_start_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    quick_start = readme.split("## Quick start")[1].split("\n## ")[0]

    assert re.findall(r"^make (\w+)", quick_start, re.M) == ["demo", "test"]
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, re.M)}


def local_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", text)
            if not link.startswith(("http://", "https://", "mailto:"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_of_a_page_finds_its_file_and_heading(page: Path) -> None:
    broken = []
    for link in local_links(page):
        target, _, anchor = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists() or (anchor and file.suffix == ".md"
                                 and anchor not in anchors(file)):
            broken.append(link)

    assert broken == []


def test_every_setting_is_documented_in_the_operations_guide() -> None:
    """Each setting's docstring is its documentation; the guide's table is written from them."""
    undocumented = [name for name, field in Settings.model_fields.items()
                    if not (field.description or "").strip()]
    assert undocumented == []
    guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert settings_table() in guide
    assert all(f"`GATEWAY_{name.upper()}`" in guide for name in Settings.model_fields)
