"""The one path policy (core/paths.py): folder inputs only inside ComfyUI's input folder or the owner's extra roots,
symlinks only where the owner placed them, caption files only with caption extensions; errors say the rule."""
import os

import pytest

from kiln.core.paths import EXTRA_ROOTS_ENV, PathRefused, check_caption_extension, confine


@pytest.fixture
def tree(tmp_path):
    inp, outside = tmp_path / "input", tmp_path / "elsewhere"
    (inp / "ds" / "1_a").mkdir(parents=True)
    (outside / "secret").mkdir(parents=True)
    return inp, outside


def test_relative_folders_inside_the_input_folder_are_read(tree):
    inp, _ = tree
    assert confine("ds", inp, environ={}) == (inp / "ds").resolve()
    assert confine("ds/1_a", inp, environ={}) == (inp / "ds" / "1_a").resolve()
    assert confine(str(inp / "ds"), inp, environ={}) == (inp / "ds").resolve()


@pytest.mark.parametrize("given", ["/etc", "../elsewhere", "ds/../../elsewhere/secret", "~"])
def test_folders_outside_are_refused_with_the_rule_not_the_machine_paths(tree, given):
    inp, _ = tree
    with pytest.raises(PathRefused) as err:
        confine(given, inp, environ={})
    text = str(err.value)
    assert "outside ComfyUI's input folder" in text and EXTRA_ROOTS_ENV in text
    assert str(inp) not in text and str(inp.parent) not in text


def test_the_owners_extra_roots_opt_in(tree):
    inp, outside = tree
    env = {EXTRA_ROOTS_ENV: os.pathsep.join([str(outside)])}
    assert confine(str(outside / "secret"), inp, environ=env) == (outside / "secret").resolve()
    with pytest.raises(PathRefused):
        confine(str(outside.parent), inp, environ=env)


def test_a_link_placed_in_the_input_folder_is_followed_but_a_deeper_one_leaving_its_folder_is_not(tree):
    inp, outside = tree
    (inp / "shared").symlink_to(outside / "secret", target_is_directory=True)
    assert confine("shared", inp, environ={}) == (outside / "secret").resolve()
    (inp / "ds" / "linkdir").symlink_to(outside / "secret", target_is_directory=True)
    with pytest.raises(PathRefused, match="link that leaves its folder"):
        confine("ds/linkdir", inp, environ={})
    (inp / "ds" / "inner").symlink_to(inp / "ds" / "1_a", target_is_directory=True)
    assert confine("ds/inner", inp, environ={}) == (inp / "ds" / "1_a").resolve()
    with pytest.raises(PathRefused, match="NUL"):
        confine("ds\x00x", inp, environ={})


@pytest.mark.parametrize("ext", [".py", "json", ".json", ".png", "../x.txt", ".txt/.."])
def test_only_caption_extensions_are_read_or_written(ext):
    with pytest.raises(PathRefused, match="not a caption extension"):
        check_caption_extension(ext, environ={})


def test_caption_extensions_and_the_owners_additions():
    assert check_caption_extension("txt", environ={}) == ".txt"
    assert check_caption_extension(".caption", environ={}) == ".caption"
    assert check_caption_extension(".tags", environ={}) == ".tags"
    assert check_caption_extension(".prompt", environ={"KILN_CAPTION_EXTENSIONS": "prompt"}) == ".prompt"
