"""Bad model, config and report files and runs too large to fit: one ``error:`` line, exit 2, no output.

Every input is generated here from the shipped digits_snn.pt (loaded, mutated, saved).
"""

from __future__ import annotations

import copy
import json
import math
import os

import pytest
import torch

from deploy.cli import main
from deploy.core import budget

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def doc(shipped_path):
    return torch.load(shipped_path, weights_only=True)


def _layer(i, key, value):
    return lambda d: d["arch"]["layers"][i].__setitem__(key, value)


def _arch(key, value):
    return lambda d: d["arch"].__setitem__(key, value)


def _tensor(key, fn):
    return lambda d: d["state_dict"].__setitem__(key, fn(d["state_dict"][key]))


def _big_conv_input(side):
    """conv -> lif -> global avg pool -> flatten -> linear -> lif on a (1, side, side) input:
    16 * side**2 neurons from a few hundred weights."""
    def edit(d):
        layers = d["arch"]["layers"]
        pool = {"type": "pool2d", "name": "pool", "inputs": ["lif1"], "mode": "avg",
                "kernel_size": [side, side], "stride": [side, side], "padding": [0, 0]}
        d["arch"]["input_shape"] = [1, side, side]
        d["arch"]["layers"] = [layers[0], layers[1], pool, dict(layers[6], inputs=["pool"]), layers[7], layers[8]]
        d["state_dict"] = {k: v for k, v in d["state_dict"].items() if k.startswith(("conv2d0", "linear7"))}
        d["state_dict"]["linear7.weight"] = torch.zeros(10, 16)
    return edit


# name: (edit of the checkpoint document, extra compile args, text the error line must contain)
CHECKPOINTS = {
    "input_shape string": (_arch("input_shape", ["sixty-four"]), [],
                           "arch.input_shape[0]: must be an integer, got 'sixty-four'"),
    "input_shape fraction": (_arch("input_shape", [1, 8.5, 8]), [], "arch.input_shape[1]: must be an integer"),
    "timesteps string": (_arch("timesteps", "eight"), [], "arch.timesteps: must be an integer, got 'eight'"),
    "timesteps zero": (_arch("timesteps", 0), [], "arch.timesteps: must be >= 1"),
    "threshold string": (_layer(1, "threshold", "high"), [], "arch.layers[1] (lif1).threshold: must be a number"),
    "layers null": (_arch("layers", None), [], "arch.layers: must be a list"),
    "layers empty": (_arch("layers", []), [], "arch.layers: must have at least 1 entries"),
    "layer not a mapping": (lambda d: d["arch"]["layers"].__setitem__(3, 7), [], "arch.layers[3]: must be a mapping"),
    "unknown layer field": (_layer(1, "gain", 2.0), [], "arch.layers[1] (lif1).gain: unknown field"),
    "meta not a dict": (lambda d: d.__setitem__("meta", [1, 2]), [], "checkpoint.meta: must be a mapping"),
    "arch meta not a dict": (_arch("meta", "x"), [], "arch.meta: must be a mapping"),
    "stride 0": (_layer(2, "stride", [0, 0]), [], "arch.layers[2] (conv2d2).stride[0]: must be >= 1, got 0"),
    "stride scalar 0": (_layer(2, "stride", 0), [], "arch.layers[2] (conv2d2).stride: must be >= 1"),
    "negative padding": (_layer(2, "padding", [-1, 1]), [], "arch.layers[2] (conv2d2).padding[0]: must be >= 0"),
    "encoding unknown": (_arch("encoding", "morse"), [], "arch.encoding: must be one of"),
    "precision -3 bits": (_layer(0, "precision", {"weight": -3}), [],
                          "arch.layers[0] (conv2d0).precision.weight: must be >= 1, got -3"),
    "precision 10^6 bits": (_layer(0, "precision", {"weight": 10 ** 6}), [],
                            "arch.layers[0] (conv2d0).precision.weight: must be <= 32"),
    "extra state_dict key": (lambda d: d["state_dict"].__setitem__("extra.w", torch.zeros(3)), [],
                             "state_dict['extra.w']: no layer uses this tensor"),
    "complex weights": (_tensor("linear7.weight", lambda t: t.to(torch.complex64) * 1j), [],
                        "state_dict['linear7.weight']: complex64 values are not supported"),
    "bool tensor": (_tensor("linear7.bias", lambda t: t > 0), [], "state_dict['linear7.bias']: bool values"),
    # sizes: estimated before anything large is allocated
    "5 TB time axis": (_arch("timesteps", 10 ** 9), [], "needs about"),
    "10^9 neurons on loihi": (_big_conv_input(8000), ["--data", "none", "-t", "loihi"],
                              "synapses and 1,024,000,010 neurons to place"),
    "10^9 neurons on imc": (_big_conv_input(8000), ["--data", "none", "-t", "imc"], "crossbar fan-out"),
}


def run(args, capfd):
    """Exit code and the stderr lines of ``deploy <args>``."""
    capfd.readouterr()
    code = main(args)
    return code, capfd.readouterr().err.strip().splitlines()


def assert_refused(code, lines, message, out):
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoint(case, doc, tmp_path, capfd):
    edit, args, message = CHECKPOINTS[case]
    bad = copy.deepcopy(doc)
    edit(bad)
    torch.save(bad, tmp_path / "bad.pt")
    out = tmp_path / "out"
    code, lines = run(["compile", str(tmp_path / "bad.pt"), "--no-figures", "-o", str(out), *args], capfd)
    assert_refused(code, lines, message, out)


def test_text_file_named_pt(tmp_path, capfd):
    (tmp_path / "m.pt").write_text("hello world\nnot a checkpoint\n")
    code, lines = run(["compile", str(tmp_path / "m.pt"), "-o", str(tmp_path / "out")], capfd)
    assert_refused(code, lines, "not a readable checkpoint", tmp_path / "out")


def test_blocked_pickle_says_what_was_refused(tmp_path, capfd):
    class Call:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"format": "neurodeploy-snn", "x": Call()}, tmp_path / "m.pt")
    for extra in ([], ["--trust-pickle"]):
        code, lines = run(["inspect", str(tmp_path / "m.pt"), *extra], capfd)
        assert code == 2 and len(lines) == 1, lines
        assert "getcwd from module 'posix'" in lines[0] and "corrupt" not in lines[0], lines


def test_nir_tau_inf(shipped_graph, tmp_path, capfd):
    import nir

    from deploy.io.nir_io import write_nir

    write_nir(shipped_graph, tmp_path / "m.nir")
    g = nir.read(tmp_path / "m.nir")
    key = next(k for k, n in g.nodes.items() if isinstance(n, nir.LIF))
    for bad in (math.inf, math.nan):
        g.nodes[key].tau[...] = bad
        nir.write(tmp_path / "bad.nir", g)
        code, lines = run(["compile", str(tmp_path / "bad.nir"), "-o", str(tmp_path / "out")], capfd)
        assert_refused(code, lines, "tau must be positive and finite", tmp_path / "out")


CONFIGS = {
    "binary": (bytes(range(256)) * 4, "digital", "not a YAML text file"),
    "clock_hz 0": (b"constants: {clock_hz: 0}", "digital", "constant 'clock_hz' (Hz) must be > 0, got 0"),
    "clock_hz negative": (b"constants: {clock_hz: -5.0e+8}", "digital", "must be > 0"),
    "clock_hz nan": (b"constants: {clock_hz: .nan}", "digital", "must be a finite number"),
    "energy negative": (b"constants: {e_add_int8_pj: -0.1}", "digital", "'e_add_int8_pj' (pJ) must be >= 0"),
    "list for a number": (b"constants: {pe_count: [1, 2]}", "digital", "'pe_count' (units) must be a number"),
    "fractional count": (b"constants: {pe_count: 2.5}", "digital", "must be a whole number"),
    "text for a number": (b"constants: {clock_hz: fast}", "digital", "must be a number, got 'fast'"),
    "text nan": (b"constants: {clock_hz: nan}", "digital", "must be a finite number"),
    "constants a list": (b"constants: [1, 2]", "digital", "'constants' must be a mapping"),
    "unknown digital option": (b"options: {rows: 64}", "digital", "unknown option 'rows' for target 'digital'"),
    "imc clock 0": (b"constants: {clock_hz: 0}", "imc", "must be > 0"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config(case, shipped_path, tmp_path, capfd):
    body, target, message = CONFIGS[case]
    (tmp_path / "c.yaml").write_bytes(body)
    out = tmp_path / "out"
    code, lines = run(["compile", str(shipped_path), "-t", target, "--data", "none", "--config",
                       str(tmp_path / "c.yaml"), "-o", str(out)], capfd)
    assert_refused(code, lines, message, out)


def test_good_config_still_changes_the_cost(shipped_path, tmp_path, capfd):
    """The rules refuse only bad values: a doubled clock halves the digital latency."""
    (tmp_path / "c.yaml").write_text("constants: {clock_hz: 1e9}\n")   # YAML 1.1 text, read as 1e9
    reports = []
    for extra in ([], ["--config", str(tmp_path / "c.yaml")]):
        out = tmp_path / f"out{len(reports)}"
        assert run(["compile", str(shipped_path), "--data", "none", "--no-figures", "-o", str(out), *extra],
                   capfd)[0] == 0
        reports.append(json.loads((out / "report.json").read_text()))
    assert reports[1]["totals"]["latency_s"] == pytest.approx(reports[0]["totals"]["latency_s"] / 2)


@pytest.mark.parametrize("kind", ["binary", "deep"])
def test_bad_report_file(kind, tmp_path, capfd):
    path = tmp_path / "r.json"
    if kind == "binary":
        path.write_bytes(bytes(range(256)))
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    code, lines = run(["report", str(path), "-o", str(tmp_path / "out")], capfd)
    assert_refused(code, lines, {"binary": "not UTF-8", "deep": "nested deeper"}[kind], tmp_path / "out")


def test_max_memory_option_and_estimate(shipped_path, shipped_graph, tmp_path, capfd):
    """--max-memory below the estimate refuses, naming both; the estimate is the hand-computed
    10 bytes x batch x T x (sum of layer outputs + input + the largest) on digital."""
    values = 64 + 2 * 1024 + 2 * 512 + 2 * 128 + 128 + 2 * 10 + 1024
    est = budget.estimate_bytes(shipped_graph, 20, 8, "digital")
    assert est.total == 10 * 20 * 8 * values
    out = tmp_path / "out"
    code, lines = run(["compile", str(shipped_path), "--samples", "20", "--batch-size", "20", "--max-memory",
                       "1M", "-o", str(out)], capfd)
    assert_refused(code, lines, f"needs about {budget.human(est.total)}", out)
    assert "limit of 1.0 MiB (--max-memory)" in lines[0]
    code, _ = run(["compile", str(shipped_path), "--samples", "20", "--batch-size", "20", "--max-memory",
                   "16M", "--no-figures", "-o", str(out)], capfd)
    assert code == 0 and (out / "report.json").is_file()


def test_convert_huge_timesteps(shipped_path, tmp_path, capfd):
    out = tmp_path / "snn.pt"
    code, lines = run(["convert", str(shipped_path.parent / "digits_ann.pt"), "-o", str(out),
                       "-T", "1000000", "--data", "digits", "--samples", "50"], capfd)
    assert_refused(code, lines, "T=1000000) needs about", out)


def test_parse_size_and_default_limit():
    assert budget.parse_size("8G") == 8 * 2 ** 30 and budget.parse_size("512MiB") == 512 * 2 ** 20
    assert budget.parse_size(1000) == 1000
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert budget.default_limit() <= ram // 2 + 1
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(budget.DeployError):
            budget.parse_size(bad)
