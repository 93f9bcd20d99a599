"""Recipe files as editors save them: byte-order marks, UTF-16, legacy encodings, directories, missing files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mtkit import RecipeError, Registry
from mtkit.recipe.file import read_recipe_file
from mtkit.recipe.resolve import load_recipe
from tests.conftest import ROOT

QUICKSTART = (ROOT / "recipes" / "quickstart.toml").read_text(encoding="utf-8")



@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("utf8_bom", lambda text: b"\xef\xbb\xbf" + text.encode("utf-8")),
        ("utf16_bom", lambda text: text.encode("utf-16")),  # Windows editors and PowerShell's `>`
        ("utf16_be_bom", lambda text: b"\xfe\xff" + text.encode("utf-16-be")),
    ],
)
def test_recipe_file_reads_byte_order_marked_text(tmp_path: Path, name: str, encode: Callable[[str], bytes]) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_bytes(encode(QUICKSTART))
    assert read_recipe_file(path) == read_recipe_file(ROOT / "recipes" / "quickstart.toml")  # run.name is set in the file


def test_recipe_file_refuses_legacy_encoding_naming_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(QUICKSTART.replace('name = "quickstart"', 'name = "qu\u00e9ckstart"').encode("latin-1"))
    line = next(i for i, text in enumerate(QUICKSTART.splitlines(), 1) if text.startswith('name = "quickstart"'))
    with pytest.raises(RecipeError, match=rf"latin.toml: not UTF-8 text: byte 0xe9 at line {line}, column 11 .*latin-1.*save the recipe as UTF-8"):
        read_recipe_file(path)


def test_recipe_file_refuses_utf16_without_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "u16.toml"
    path.write_bytes(QUICKSTART.encode("utf-16-le"))
    with pytest.raises(RecipeError, match=r"u16.toml: not UTF-8 text: a NUL byte at line 1, column 2 .*UTF-16 or UTF-32 without a byte-order mark"):
        read_recipe_file(path)


def test_recipe_file_names_a_directory_and_what_to_pass(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(QUICKSTART, encoding="utf-8")
    with pytest.raises(RecipeError, match=r"is a directory, not a recipe file; pass a .toml file inside it \(it holds a.toml\)"):
        read_recipe_file(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RecipeError, match=rf"is a run directory, not a recipe file; pass {run_dir / 'recipe.json'}"):
        read_recipe_file(run_dir)
    with pytest.raises(RecipeError, match=r"nope.toml: no such recipe file"):
        read_recipe_file(tmp_path / "nope.toml")


def test_recipe_file_json_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"a JSON recipe must be an object of tables \(got list\)"):
        read_recipe_file(path)


def test_recipe_with_run_not_a_table_is_a_validation_problem(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "r.toml"
    path.write_text("run = [1, 2]\n" + QUICKSTART.replace("[run]", "[unused]", 1), encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    assert f"{path}: run: input should be a valid dictionary" in str(info.value)
