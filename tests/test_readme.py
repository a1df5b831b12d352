"""The README's command blocks as a new user pastes them.

Every ``deploy ...`` line of the README must parse (its command and options exist, values pass the
option checks); the Quick tour, its Python block and the data-file example run for real, in a
fresh folder that holds the repository's ``examples/`` (as a clone does). The slower blocks
(precision search, distillation, retraining) run with ``DEPLOY_README_SLOW=1``.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import typer

from deploy.cli import app, main
from deploy.cli.main import GLOBAL_FLAGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SLOW = os.environ.get("DEPLOY_README_SLOW") == "1"


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, body) of every fenced block (nested indented fences included)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"\s*```(\w*)\s*$", lines[i])
        if m:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"\s*```\s*$", lines[i]):
                body.append(lines[i].strip() if lines[i].startswith("  ") else lines[i])
                i += 1
            out.append((start, m.group(1), "\n".join(body)))
        i += 1
    return out


def deploy_commands(body: str) -> list[list[str]]:
    """The ``deploy`` command lines of a block as argument lists (continuations joined, comments cut)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["deploy"]:
            out.append(words[1:])
    return out


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


ALL = [(n, args) for n, _, body in fenced_blocks(README) for args in deploy_commands(body)]
TOUR = [args for _, lang, body in fenced_blocks(section("Quick tour")) if not lang for args in deploy_commands(body)]


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    """A working folder laid out as a fresh clone: the shipped ``examples/`` and nothing else."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_the_blocks_this_test_reads():
    assert len(ALL) >= 30 and len(TOUR) >= 7
    assert any(a[0] == "check" for a in TOUR) and any("mnist_snn.pt" in " ".join(a) for a in TOUR)


@pytest.mark.parametrize("line,args", ALL, ids=[f"line{n}-{a[0] if a else 'deploy'}" for n, a in ALL])
def test_every_readme_command_parses(line, args, clone):
    """Command, options and option values of every README line are accepted by the parser."""
    group = typer.main.get_command(app)
    words = [a for a in args if a not in GLOBAL_FLAGS]
    if not words:
        assert main(args) == 0  # `deploy --version`
        return
    name, *rest = words
    assert name in group.commands, f"README line {line}: unknown command {name}"
    model = rest[0].rpartition(":")[0] if rest and rest[0].endswith(":build") else rest[0] if rest else ""
    if model.startswith("out/"):  # made by an earlier line or script: stands in for it here
        (clone / model).parent.mkdir(parents=True, exist_ok=True)
        (clone / model).touch()
    with group.make_context("deploy", [name]) as ctx:
        group.commands[name].make_context(name, rest, parent=ctx)


def test_quick_tour_runs_as_pasted(clone, capsys):
    from deploy.core import data

    if not (data.mnist_dir() / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("the MNIST files are not installed (DEPLOY_MNIST_DIR)")
    for args in TOUR:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 0, (args, err)
    assert (clone / "out" / "cmp" / "comparison.md").is_file()


def test_quick_tour_python_block_runs(clone, capsys):
    (block,) = [body for _, lang, body in fenced_blocks(section("Quick tour")) if lang == "python"]
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "{'loihi': []}" in out and "array(" not in out
    assert (clone / "out" / "imc" / "report.html").is_file()


def test_data_file_example_runs(clone, capsys):
    blocks = fenced_blocks(README)
    i = next(k for k, (_, lang, body) in enumerate(blocks) if lang == "python" and body.startswith("# make_data.py"))
    (clone / "make_data.py").write_text(blocks[i][2])
    exec(compile(blocks[i][2], "make_data.py", "exec"), {})  # noqa: S102 - `python make_data.py`
    for args in deploy_commands(blocks[i + 1][2]):
        assert main(args) == 0, args


@pytest.mark.skipif(not SLOW, reason="minutes of training and search: set DEPLOY_README_SLOW=1")
def test_slow_blocks_run(clone):
    """The blocks that search, distill or retrain, whose inputs are shipped or made by an earlier line
    of the same block (the Bring-your-own blocks need their scripts' outputs first)."""
    ran = 0
    for _, lang, body in fenced_blocks(README):
        cmds = deploy_commands(body)
        if lang or not any(a[0] in ("quantize", "distill", "finetune") for a in cmds):
            continue
        if any(w.startswith("out/byo") for a in cmds for w in a):
            continue
        for args in cmds:
            assert main(args) == 0, args
            ran += 1
    assert ran >= 5
