"""Bad options, outputs, names and faults on every command (issue 15, part B): one ``error:`` line,
exit code 2, nothing written. Cases are generated from the commands' own option declarations."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
import typer

from deploy import cli_options
from deploy.cli import app, main, one_line

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "models" / "digits_snn.pt")
ANN = str(ROOT / "examples" / "models" / "digits_ann.pt")

#: what each command needs besides the option under test (outputs relative to the test's cwd)
BASE = {
    "compile": [MODEL, "-o", "rep"],
    "inspect": [MODEL],
    "check": [MODEL],
    "export": [MODEL, "-f", "nir", "-o", "m.nir"],
    "netx": [MODEL, "-o", "m.net"],
    "quantize": [MODEL, "-o", "q"],
    "finetune": [MODEL, "-o", "t.pt"],
    "distill": [ANN, "--student", "s.yaml", "-o", "s.pt"],
    "convert": [ANN, "-o", "c.pt", "--data", "digits"],
    "report": ["r.json"],
    "targets": [],
    "explore": ["space.yaml", "-o", "ex"],
    "train": ["--recipe", "desire", "-o", "m.pt"],
}
#: -o of each command that writes: a folder or a file
OUTPUTS = {"compile": "folder", "report": "folder", "quantize": "folder", "export": "file", "netx": "file",
           "finetune": "file", "convert": "file", "distill": "file", "explore": "folder",
           "train": "file"}
BAD_INT = ["abc", "1.5", "-1", ""]
BAD_FLOAT = ["abc", "nan", "inf", "-1"]


def _commands() -> dict:
    return typer.main.get_command(app).commands


def _numeric_options() -> list[tuple[str, str, type]]:
    out = []
    for name, cmd in sorted(_commands().items()):
        for p in cmd.params:
            kind = p.type_descriptor.annotation
            if p.param_type_name == "option" and kind in (int, float):
                out.append((name, next(o for o in p.opts if o.startswith("--")), kind))
    return out


NUMERIC = _numeric_options()


def run(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (Python's own __pycache__ aside)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def assert_one_error(code: int, err: str, *fragments: str) -> str:
    lines = err.strip("\n").split("\n")
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "\x1b" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- options --------------------------------------------------------------------------------
def test_the_generated_cases_cover_every_command():
    assert set(BASE) == set(_commands()), "a new command needs its BASE arguments here"
    assert {c for c, _, _ in NUMERIC} >= set(BASE) - {"report", "targets"}
    assert len(NUMERIC) >= 40


@pytest.mark.parametrize("command,option", [(c, o) for c, o, _ in NUMERIC])
def test_every_numeric_option_is_checked_when_parsed(command, option):
    """Numeric options are declared with the cli_options helpers (range and finiteness checked
    while parsing, before any work)."""
    param = next(p for p in _commands()[command].params if option in p.opts)
    parser = param.type_descriptor.parameter_info.parser
    assert parser is not None and parser.__module__ == "deploy.cli_options", (command, option)


@pytest.mark.parametrize("command,option,value", [(c, o, v) for c, o, k in NUMERIC
                                                  for v in (BAD_INT if k is int else BAD_FLOAT)])
def test_bad_numeric_option_is_one_line(command, option, value, cwd, capsys):
    code, _, err = run([command, *BASE[command], option, value], capsys)
    line = assert_one_error(code, err, option, f"(see deploy {command} --help)")
    kind = next(k for c, o, k in NUMERIC if (c, o) == (command, option))
    if value in ("abc", "1.5", ""):
        assert f"{option}: {value!r} is not {'an integer' if kind is int else 'a number'}" in line, line
    elif value in ("nan", "inf"):
        assert f"{option} must be a finite number, got {value}" in line, line
    else:  # -1 is below every bound
        assert f"{option} must " in line or f"{option}: takes" in line, line
    assert listing(cwd) == []


@pytest.mark.parametrize("args,fragment", [
    (["compile", MODEL, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["compile", MODEL, "--data", "events", "--samples", "-1"], "--samples must be >= 1, got -1"),
    (["compile", MODEL, "--seed", "-1"], "--seed must lie in 0..4294967295, got -1"),
    (["compile", MODEL, "--seed", str(2 ** 63 + 1)], f"got {2 ** 63 + 1}"),
    (["quantize", MODEL, "-o", "q", "--seed", str(2 ** 64)], "--seed must lie in 0.."),
    (["finetune", MODEL, "-o", "t.pt", "--lr", "nan"], "--lr must be a finite number, got nan"),
    (["finetune", MODEL, "-o", "t.pt", "--split-seed", "-3"], "--split-seed must lie in 0.."),
    (["finetune", MODEL, "-o", "t.pt", "--augment", "9"], "takes 0..8 copies, got 9"),
    (["distill", ANN, "--student", "s.yaml", "-o", "s.pt", "--lr", "-1"], "--lr must be > 0, got -1"),
    (["distill", ANN, "--student", "s.yaml", "-o", "s.pt", "--alpha", "1.5"], "--alpha must lie in [0, 1]"),
    (["convert", ANN, "-o", "c.pt", "-T", "0"], "--timesteps must be >= 1, got 0"),
    (["convert", ANN, "-o", "c.pt", "--percentile", "0"], "--percentile must lie in (0, 100]"),
    (["compile", MODEL, "--rate", "1.01"], "--rate must lie in [0, 1], got 1.01"),
    (["compile", MODEL, "--samples", "abc"], "--samples: 'abc' is not an integer (see deploy compile --help)"),
    (["compile", MODEL, "--samples"], "--samples"),
    (["compile", MODEL, "--bogus", "1"], "--bogus: no such option"),
    (["compile", MODEL, "--sample", "3"], "did you mean --samples"),
    (["targets", "--verbose"], "--verbose: no such option (see deploy targets --help)"),
    (["compil", MODEL], "No such command 'compil'"),
    (["compile"], "missing argument MODEL"),
    (["quantize", MODEL], "missing option --out"),
])
def test_issue_cases_are_one_line(args, fragment, cwd, capsys):
    code, _, err = run(args, capsys)
    assert_one_error(code, err, fragment)
    assert listing(cwd) == []


def test_seed_bound_is_the_data_splits_limit():
    """The largest seed the option takes is the largest scikit-learn's split takes."""
    from deploy.core import data

    parse = cli_options.integer(0, cli_options.SEED_MAX)
    assert parse(str(cli_options.SEED_MAX)) == cli_options.SEED_MAX
    assert len(data.digits(seed=cli_options.SEED_MAX).y_test) == 360
    with pytest.raises(ValueError):
        data.digits(seed=cli_options.SEED_MAX + 1)
    with pytest.raises(typer.BadParameter):
        parse(str(cli_options.SEED_MAX + 1))


def test_number_parser_bounds_against_hand_values():
    lr = cli_options.number(0, lo_open=True)
    assert lr("2e-3") == 0.002 and lr(1) == 1.0
    for bad in ("0", "-0.0", "nan", "-inf", "1e999", "0x10", "one"):
        with pytest.raises(typer.BadParameter):
            lr(bad)
    frac = cli_options.number(0, 1)
    assert frac("0") == 0.0 and frac("1") == 1.0
    with pytest.raises(typer.BadParameter, match=r"lie in \[0, 1\], got 1.5"):
        frac("1.5")
    count = cli_options.integer(1)
    assert count(" 7 ") == 7 and count(None) is None
    for bad in ("0", "1.0", "1e3", "seven", ""):
        with pytest.raises(typer.BadParameter):
            count(bad)


# -- outputs ------------------------------------------------------------------------------------
def _bad_outputs(tmp: Path, kind: str) -> dict[str, tuple[str, str]]:
    (tmp / "afile").write_text("x")
    (tmp / "afolder").mkdir()
    cases = {
        "empty": ("", "empty output path"),
        "under a file": (str(tmp / "afile" / "sub" / "x.pt"), "is a file, not a folder"),
        "/proc": ("/proc/neurodeploy/x.pt", "cannot write"),
    }
    if kind == "folder":
        cases["existing file"] = (str(tmp / "afile"), "exists and is not a folder")
    else:
        cases["existing folder"] = (str(tmp / "afolder"), "is a folder")
    return cases


def _out_args(command: str, out: str) -> list[str]:
    """The command's arguments with output ``out`` and a model (or report) that does not exist."""
    extra = {"export": ["-f", "nir"], "convert": ["--data", "digits"], "distill": ["--student", "s.yaml"]}
    return ["missing.json" if command == "report" else "missing.pt", *extra.get(command, []), "-o", out]


@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_unwritable_output_fails_before_any_work(command, cwd, capsys):
    """The output is checked first: the model given does not even exist, yet the error is the
    output's, so nothing was loaded, trained or simulated."""
    cases = _bad_outputs(cwd, OUTPUTS[command])
    before = listing(cwd)
    for label, (out, fragment) in cases.items():
        code, _, err = run([command, *_out_args(command, out)], capsys)
        assert_one_error(code, err, "--out", fragment, f"(see deploy {command} --help)")
        assert listing(cwd) == before, label


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(cwd, capsys):
    ro = cwd / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run(["compile", MODEL, "-o", ro / "rep"], capsys)
        assert_one_error(code, err, "--out", "cannot write")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_write_failure_is_one_line_without_the_export_warning(cwd, capsys, monkeypatch):
    """A NIR export whose disk is full: the reset-by-subtraction warning raised on the way is not
    printed next to the error, and no temporary file is left."""
    import nir

    def full(path, graph):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nir, "write", full)
    code, _, err = run(["export", MODEL, "-f", "nir", "-o", "m.nir"], capsys)
    assert_one_error(code, err, "cannot write", "m.nir", "No space left on device")
    assert "subtraction" not in err and listing(cwd) == []


# -- one line -------------------------------------------------------------------------------------
FACTORY = """
import warnings
import torch.nn as nn
INPUT_SHAPE = (1, 8, 8)
TIMESTEPS = 4

def good():
    warnings.warn("factory says hello")
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def bad():
    warnings.warn("factory says hello")
    return "not a module"

def ctrl_c():
    raise KeyboardInterrupt
"""


def test_warnings_show_on_success_only(cwd, capsys):
    (cwd / "fac.py").write_text(FACTORY)
    code, out, err = run(["inspect", "fac.py:good"], capsys)
    assert code == 0 and "linear" in out
    assert err.strip() == "warning: factory says hello"
    code, _, err = run(["inspect", "fac.py:bad"], capsys)
    assert_one_error(code, err, "returned str, not a torch nn.Module")
    assert "hello" not in err


def test_keyboard_interrupt_in_user_code_is_one_line(cwd, capsys):
    (cwd / "fac.py").write_text(FACTORY)
    code, _, err = run(["compile", "fac.py:ctrl_c", "-o", "rep"], capsys)
    assert code == 130 and err == "aborted\n"
    assert listing(cwd) == ["fac.py"]


@pytest.mark.parametrize("name", ["bad\nname.pt", "red\x1b[31mname.pt", "bell\x07.pt", "rtl\u202ename.pt"])
def test_control_characters_in_names_are_escaped(name, cwd, capsys):
    (cwd / name).write_bytes(b"not a checkpoint")
    for args in (["compile", name, "-o", "rep"], ["inspect", name],
                 ["compile", MODEL, "-o", str(cwd / name / "rep")]):
        code, _, err = run(args, capsys)
        line = assert_one_error(code, err, repr(name)[1:-1])
        assert all(ch.isprintable() for ch in line), line
    assert one_line("a\nb\x1b[0m") == "a\\nb\\x1b[0m" and one_line("µs ÷ 2") == "µs ÷ 2"


# -- outputs: stale files, and what --seed changes ---------------------------------------------------
def test_staged_folder_leaves_no_stale_file(tmp_path):
    from deploy.io.atomic import staged_dir

    out = tmp_path / "rep"
    with staged_dir(out) as stage:
        for name in ("report.json", "report.md", "comparison.png"):
            (stage / name).write_text(name)
    with staged_dir(out) as stage:
        (stage / "report.json").write_text("second")
    assert listing(out) == ["report.json"] and (out / "report.json").read_text() == "second"
    # a folder that also holds the user's files keeps them; the earlier output's stale files go
    (out / "notes.txt").write_text("mine")
    (out / "spike_rates.png").write_text("old")
    with staged_dir(out) as stage:
        (stage / "report.json").write_text("third")
        (stage / "report.md").write_text("third")
    assert listing(out) == ["notes.txt", "report.json", "report.md"]
    # a folder with no earlier output in it only gets the new files
    other = tmp_path / "pictures"
    other.mkdir()
    (other / "holiday.png").write_text("keep")
    with staged_dir(other) as stage:
        (stage / "report.json").write_text("x")
    assert listing(other) == ["holiday.png", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures", "rep"]


def test_compile_without_compare_drops_the_old_comparison(cwd, capsys):
    args = ["compile", MODEL, "--samples", "8", "-o", "rep"]
    assert run([*args, "--compare", "digital"], capsys)[0] == 0
    assert (cwd / "rep" / "comparison.png").is_file()
    assert run(args, capsys)[0] == 0
    assert listing(cwd / "rep") == ["energy_latency.png", "report.html", "report.json", "report.md",
                                    "spike_rates.png"]
    assert json.loads((cwd / "rep" / "report.json").read_text())["comparison"] is None
    assert [p.name for p in cwd.iterdir()] == ["rep"]  # no staging or replaced folder left


def test_seed_does_not_redraw_the_test_split(shipped_graph):
    """--seed changes the simulation only; the digits test split follows --split-seed (README: 0).
    Reference: the float network evaluated directly on scikit-learn's split."""
    import deploy
    from deploy.core import data
    from deploy.core.net import SpikingNet
    from deploy.training.snn import evaluate

    def direct(split_seed: int) -> float:
        s = data.digits(seed=split_seed)
        return evaluate(SpikingNet(shipped_graph), s.x_test, s.y_test)

    with torch.no_grad():
        ref0, ref3 = direct(0), direct(3)
    assert ref0 != ref3  # the two splits tell apart (98.1 % vs 98.9 %)
    runs = {(seed, split): deploy.compile(MODEL, target="digital", seed=seed, split_seed=split)
            for seed, split in ((0, 0), (3, 0), (0, 3))}
    assert runs[(0, 0)].accuracy.reference == pytest.approx(ref0)
    assert runs[(3, 0)].accuracy.reference == pytest.approx(ref0)
    assert runs[(0, 3)].accuracy.reference == pytest.approx(ref3)
    assert runs[(3, 0)].run["seed"] == 3 and runs[(0, 3)].run["split_seed"] == 3
