"""The first hour of a new user: fast start-up, one vocabulary across commands, `deploy check`,
the Python API behind every command, short reprs and progress bars."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import deploy
from deploy.cli import app, main
from deploy.core import progress

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "models" / "digits_snn.pt")
ANN = ROOT / "examples" / "models" / "digits_ann.pt"
#: CLI parameters with another name in the API (CLI name -> API name), and CLI-only ones
RENAMED = {"no_figures": "figures", "no_shift": "shift", "to": "format"}
CLI_ONLY = {"reports"}
#: commands with a same-named function in the API
API_COMMANDS = ("compile", "check", "inspect", "quantize", "finetune", "distill", "convert", "export", "netx",
                "report", "explore")


def _commands() -> dict:
    return typer.main.get_command(app).commands


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- start-up ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["targets"], ["compile"], ["compile", "m.pt", "--samples", "x"],
                                  ["--version"], ["check", "--help"]])
def test_light_commands_do_not_import_torch(args):
    """--help, targets and usage errors answer without torch, Lava or matplotlib (the seconds of
    start-up a user waited for)."""
    code = (f"import sys; from deploy.cli import main; rc = main({args!r}); "
            "heavy = [m for m in ('torch', 'lava', 'matplotlib', 'numpy') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "HEAVY []" in proc.stdout, (proc.stdout[-400:], proc.stderr[-400:])
    assert proc.returncode in (0, 2)


def test_import_deploy_is_cheap_and_lists_the_api():
    code = "import sys, deploy; print(sorted(deploy.__all__)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("False")
    for name in ("compile", "check", "inspect", "quantize", "finetune", "distill", "convert", "export", "netx",
                 "report"):
        assert name in deploy.__all__ and name in dir(deploy)
        fn = getattr(deploy, name)
        assert callable(fn) and fn.__doc__, name


def test_submodule_imports_keep_the_functions():
    import deploy.report.render  # noqa: F401
    import deploy.training.convert  # noqa: F401 - a submodule of the same name as the function
    import deploy.training.distill.distill  # noqa: F401

    for name in ("convert", "distill", "report"):
        assert inspect.isfunction(getattr(deploy, name)), name


def test_targets_listing_matches_the_target_classes(capsys):
    """`deploy targets` reads spec names and descriptions without importing the targets; they
    equal the imported classes' attributes."""
    from deploy.cli.targets import _resolve, class_attributes
    from hwmodels import TARGETS, available, target_class

    for name in available():
        cls = target_class(name)
        attrs = class_attributes(*_resolve(*TARGETS[name].split(":")))
        assert (attrs["spec_name"], attrs["description"]) == (cls.spec_name, cls.description), name
    code, out, _ = _run(["targets"], capsys)
    assert code == 0 and "loihi1.yaml" in out


# -- one vocabulary -----------------------------------------------------------------------------
def test_help_has_no_python_type_labels_and_shared_option_names(capsys):
    for name in _commands():
        code, out, _ = _run([name, "--help"], capsys)
        assert code == 0
        assert "<" not in out, (name, [line for line in out.splitlines() if "<" in line])
    params = {name: {o for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
              for name, cmd in _commands().items()}
    for name, opts in params.items():
        if "--target" in opts:
            assert "-t" in opts, name
        if "--weights" in opts:  # a state_dict everywhere
            help_text = next(p.help for p in _commands()[name].params if "--weights" in p.opts)
            assert "state_dict" in help_text, name
    assert {"--weight-bits", "--neuron-bits"} <= params["quantize"]
    for heavy in ("compile", "quantize", "finetune", "distill", "convert"):
        assert {"--threads", "--progress", "--quiet"} <= params[heavy], heavy


def test_global_flags_after_the_command(capsys, tmp_path):
    code, _, err = _run(["inspect", str(tmp_path / "missing.pt"), "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "no such file" in err
    code, out, _ = _run(["targets", "--version"], capsys)
    assert code == 0 and out.strip() == f"neurodeploy {deploy.__version__}"


# -- deploy check -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def li_readout(tmp_path_factory):
    """The digits ANN converted with an LI (membrane) readout, which Loihi cannot read."""
    path = tmp_path_factory.mktemp("li") / "li.pt"
    deploy.convert(str(ANN), path, data="digits", timesteps=2, samples=200)
    return path


def test_check_names_the_readout_fix(li_readout, capsys):
    found = deploy.check(str(li_readout), target=["digital", "loihi"])
    assert found["digital"] == []
    (problem,) = found["loihi"]
    assert problem.layer == deploy.load_model(str(li_readout)).nodes[-1].name  # the LI readout
    assert "--readout if" in problem.fix
    code, out, _ = _run(["check", str(li_readout), "-t", "loihi"], capsys)
    assert code == 1 and "--readout if" in out and "does not fit" in out
    code, out, _ = _run(["check", MODEL, "-t", "digital", "-t", "imc"], capsys)
    assert code == 0 and "fits every target" in out
    code, _, err = _run(["check", MODEL, "-t", "nope"], capsys)
    assert code == 2 and err.startswith("error: unknown target 'nope'")


def test_check_reports_resource_need_and_limit(tmp_path):
    """A 4-row crossbar cannot hold a 3x3 kernel window (9 rows, counted by hand)."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text("options: {rows: 4}\n")
    problems = deploy.check(MODEL, target="imc", config=str(cfg))["imc"]
    assert problems and all(p.resource == "array rows for one kernel window" for p in problems)
    assert {p.layer for p in problems} == {"conv2d0", "conv2d2", "conv2d4"}
    assert all((p.need, p.limit) == (9, 4) for p in problems)
    assert "rows: 9" in problems[0].fix


# -- API parity ---------------------------------------------------------------------------------
def test_every_command_wraps_an_api_function_with_its_options():
    for name, cmd in _commands().items():
        if name not in API_COMMANDS:
            continue
        api = set(inspect.signature(getattr(deploy, name)).parameters)
        for p in cmd.params:
            if p.name in ("progress", "threads") and name in ("compile", "quantize", "convert"):
                continue  # process-wide settings on the CLI; compile/quantize take progress= too
            mapped = RENAMED.get(p.name, p.name)
            if p.name in CLI_ONLY:
                continue
            assert mapped in api or "options" in api, (name, p.name)


def test_compile_data_none_as_on_the_cli(tmp_path, capsys):
    report = deploy.compile(MODEL, data="none", rate=1.0)
    assert report.mode == "assumed-rate" and report.accuracy is None
    code, _, _ = _run(["compile", MODEL, "--data", "none", "--rate", "1", "-o", str(tmp_path / "r"),
                       "--no-figures"], capsys)
    from deploy.report.schema import Report

    cli = Report.load(tmp_path / "r" / "report.json")
    assert code == 0 and cli.totals.energy_j == report.totals.energy_j


def test_graph_repr_is_a_layer_table(shipped_graph):
    text = repr(shipped_graph)
    assert "array(" not in text and "tensor(" not in text and len(text.splitlines()) < 30
    for node in shipped_graph.nodes:
        assert node.name in text
    assert f"{shipped_graph.params():,}" in text  # the total, as deploy inspect prints it


# -- progress -----------------------------------------------------------------------------------
def test_progress_bars_show_only_when_enabled(capsys):
    try:
        progress.configure(None)  # auto: pytest's stderr is not a terminal
        assert list(progress.bar(range(3), desc="quiet")) == [0, 1, 2]
        assert capsys.readouterr().err == ""
        progress.configure(True)
        outer = progress.bar(range(2), desc="outer")
        seen = []
        for i in outer:
            seen += [(i, j) for j in progress.bar(range(3), desc="inner", leave=False)]
        err = capsys.readouterr().err
        assert seen == [(i, j) for i in range(2) for j in range(3)]
        assert "outer" in err and "2/2" in err
        progress.configure(False)
        b = progress.bar(desc="manual", total=4)
        b.update(4)
        b.set_postfix(loss="0.1")
        b.close()
        assert capsys.readouterr().err == ""
    finally:
        progress.configure(None)
