"""CONTRIBUTING.md's map of the code follows the tree: every place it names exists, and every host module,
core package and core module, and top-level code folder is on it."""
import re

from conftest import REPO


def _map_lines() -> list[str]:
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = re.search(r"## Layout\s*\n+```\n(.*?)```", text, re.S)
    assert block, "CONTRIBUTING.md has no layout code block"
    return block.group(1).splitlines()


def _sections() -> dict[str, list[str]]:
    """Top-level entry ('host/', 'core/', ...) -> the names its indented lines start with (a line may name
    several, comma-separated: 'fixtures.py, family_fixtures.py, ...'); continuation lines name none."""
    sections, current = {}, None
    for line in _map_lines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line.split()[0]
            sections[current] = []
        elif re.match(r"^  \S", line):
            head = re.split(r"\s{2,}", line.strip())[0]
            sections[current] += [n.strip() for n in head.split(",")]
    return sections


def test_every_place_on_the_map_exists():
    sections = _sections()
    missing = [top for top in sections if not (REPO / top).exists()]
    missing += [f"{top}{name}" for top, names in sections.items() for name in names if not (REPO / top / name).exists()]
    assert not missing, f"the map names places that are not in the tree: {missing}"


def test_every_host_module_and_core_package_is_on_the_map():
    sections = _sections()
    host = {p.name for p in (REPO / "host").glob("*.py")}
    core = {p.name + "/" for p in (REPO / "core").iterdir() if (p / "__init__.py").is_file()}
    core |= {p.name for p in (REPO / "core").glob("*.py") if p.name != "__init__.py"}
    assert not host - set(sections["host/"]), f"host modules missing from the map: {sorted(host - set(sections['host/']))}"
    assert not core - set(sections["core/"]), f"core packages/modules missing from the map: {sorted(core - set(sections['core/']))}"
    code_dirs = {p.name + "/" for p in REPO.iterdir()
                 if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.py")) and p.name != "shared"}
    assert not code_dirs - set(sections), f"code folders missing from the map: {sorted(code_dirs - set(sections))}"


def test_each_place_is_described_once():
    """Two descriptions of one module drift apart (the map once described host/preflight.py twice)."""
    repeated = {f"{top}{name}" for top, names in _sections().items() for name in names if names.count(name) > 1}
    assert not repeated, f"the map describes these more than once: {sorted(repeated)}"


def test_readme_is_a_front_door_and_every_doc_link_resolves():
    """The README stays short (details live in docs/ and CONTRIBUTING.md), and every relative link or picture in
    the README, CONTRIBUTING.md and docs/ names a file that exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, f"README.md has {len(readme.splitlines())} lines; move details to docs/"
    broken = []
    for page in [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, f"links to missing files: {broken}"
