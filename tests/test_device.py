"""``deploy compile --device`` (issue 17): the digital and imc simulations on a torch device.

Without a GPU the device path runs under :class:`FakeCuda`: tensors moved to ``cuda`` stay CPU
tensors that report ``cuda:0`` and raise, as a GPU does, when an operation mixes them with a CPU
tensor (0-dim ones aside), draws on them with a CPU generator or converts them to numpy. A
target whose simulation passes under it moves its whole network and every batch, and its results
must equal the CPU run exactly (the arithmetic is the CPU's). The tests marked for CUDA compare a
real GPU run with the CPU within float tolerance.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

import deploy
import deploy.core.device as device_mod
import deploy.pipeline as pipeline
from deploy.cli import main
from deploy.core.metrics import Activity
from deploy.pipeline import load_test_set, resolve_model
from hwmodels import get_target
from hwmodels.imc.crossbar import CrossbarSynapse
from quant.ptq import QConfig, quantize

torch.set_num_threads(1)

MODEL = str(Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn.pt")
NO_CUDA = "--device cuda: no CUDA device available (torch.cuda.is_available() is False)"
GPU = torch.device("cuda", 0)
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# -- a fake CUDA device on the CPU -------------------------------------------------------------

class OnGpu(torch.Tensor):
    """A CPU tensor standing for one on cuda:0 (:class:`FakeCuda` propagates it)."""

    __torch_function__ = torch._C._disabled_torch_function_impl


#: calls CUDA allows across devices (copies, indexing with CPU indices, a type check)
MIXED_OK = {torch.Tensor.copy_, torch.Tensor.__getitem__, torch.Tensor.__setitem__,
            torch._has_compatible_shallow_copy_type}
#: calls whose tensor result is their first argument, on that argument's device
KEEP_SELF = {torch.Tensor.copy_, torch.Tensor.__setitem__}


def _gpu(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


class FakeCuda(TorchFunctionMode):
    """``cuda`` on the CPU with CUDA's device rules (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_gpu = any(isinstance(t, OnGpu) for t in tensors)
        prop = getattr(func, "__self__", None)
        if prop is torch.Tensor.device:
            return GPU if on_gpu else func(*args, **kwargs)
        if prop in (torch.Tensor.is_cuda, torch.Tensor.is_cpu):
            return on_gpu == (prop is torch.Tensor.is_cuda)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and on_gpu:
            raise TypeError("can't convert cuda:0 device type tensor to numpy")
        dest = None                                   # "gpu", "cpu", or None: where the inputs are
        if func is torch.Tensor.cpu:
            dest = "cpu"
        elif func is torch.Tensor.to:
            to, dtype = torch._C._nn._parse_to(*args[1:], **kwargs)[:2]
            if to is not None:
                dest = "gpu" if _gpu(to) else "cpu"
                args, kwargs = (args[0], dtype or args[0].dtype), {}
        elif _gpu(kwargs.get("device")):              # a factory asked for the GPU
            dest, kwargs["device"] = "gpu", "cpu"
        gen = kwargs.get("generator")
        if (dest == "gpu" or (dest is None and on_gpu)) and gen is not None and gen.device.type != "cuda":
            raise RuntimeError(f"Expected a 'cuda' device type for generator but found '{gen.device.type}'")
        if dest is None and on_gpu and func not in MIXED_OK and any(
                not isinstance(t, OnGpu) and t.dim() > 0 for t in tensors):
            raise RuntimeError(f"{getattr(func, '__name__', func)}: Expected all tensors to be on the same "
                               "device, but found at least two devices, cuda:0 and cpu!")
        out = func(*args, **kwargs)
        if dest == "cpu":
            return pytree.tree_map_only(OnGpu, lambda t: t.as_subclass(torch.Tensor), out)
        if dest == "gpu" or (on_gpu and func not in KEEP_SELF):
            return pytree.tree_map_only(torch.Tensor, lambda t: t if isinstance(t, OnGpu) else t.as_subclass(OnGpu),
                                        out)
        return out


@contextlib.contextmanager
def fake_cuda():
    """Run under :class:`FakeCuda` (``Module.to`` then replaces parameters, as it must for a subclass)."""
    old = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        with FakeCuda():
            yield
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(old)


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph():
    return resolve_model(MODEL)


@pytest.fixture(scope="module")
def samples(graph):
    return load_test_set(graph, "digits", 16).x


def _run(target, graph, x, device="cpu") -> Activity:
    t = get_target(target) if isinstance(target, str) else target
    return t.simulate(t.map(graph), x, 8, torch.Generator().manual_seed(0), device=device)


def _assert_same(a: Activity, b: Activity) -> None:
    """Predictions, logits and every per-layer statistic identical."""
    assert torch.equal(a.predictions, b.predictions) and torch.equal(a.logits, b.logits)
    assert {k: vars(v) for k, v in a.layers.items()} == {k: vars(v) for k, v in b.layers.items()}


def _dump(report) -> dict:
    d = report.to_dict()
    d["run"].pop("duration_s")
    return d


# -- the fake device checks itself -------------------------------------------------------------

def test_fake_cuda_raises_where_a_gpu_would():
    """The instrument: device mixing, a CPU generator on the device and numpy of a device tensor
    raise; ``.cpu()`` and the results of device tensors are where a GPU puts them."""
    layer, x = torch.nn.Linear(3, 2), torch.ones(4, 3)
    with fake_cuda(), torch.no_grad():
        layer.to("cuda")
        xd = x.to(GPU)
        assert layer.weight.device == GPU and isinstance(layer.weight, torch.nn.Parameter)
        y = layer(xd)
        assert y.device == GPU and y.cpu().device.type == "cpu" and type(y.cpu()) is torch.Tensor
        assert float(y.sum()) == pytest.approx(float(torch.nn.Linear.forward(layer, xd).sum()))
        with pytest.raises(RuntimeError, match="two devices"):
            layer(x)
        with pytest.raises(RuntimeError, match="two devices"):
            xd * torch.arange(3.0)
        assert (xd * torch.tensor(2.0)).device == GPU          # a 0-dim CPU tensor is allowed
        with pytest.raises(RuntimeError, match="generator"):
            torch.rand(3, generator=torch.Generator(), device=xd.device)
        with pytest.raises(TypeError, match="numpy"):
            xd.numpy()


# -- (d) the device path on the fake device: everything moves, results equal the CPU's -----------

def test_network_and_every_batch_move_to_the_device(graph, samples, monkeypatch):
    """simulate_module gets the network on the device; each batch reaches it on the device and
    its recording comes back to the CPU."""
    seen = []
    real = device_mod.simulate_module

    def spy(net, *args):
        seen.append(net)
        inner_run = net.net.run

        def run(x, record=False, encoded=False, **kw):
            seen.append(x.device)
            out, values = inner_run(x, record=record, encoded=encoded, **kw)
            seen.append({v.device for v in (out, *values.values())})
            return out, values
        net.net.run = run
        return real(net, *args)

    monkeypatch.setattr(device_mod, "simulate_module", spy)
    with fake_cuda():
        act = _run("digital", graph, samples, "cuda")
        net = seen[0]
        assert {p.device for p in net.net.parameters()} | {b.device for b in net.net.buffers()} == {GPU}
    assert seen[1:] == [GPU, {GPU}] * 2                       # 16 samples, batches of 8
    assert type(act.predictions) is torch.Tensor and act.predictions.device.type == "cpu"


@pytest.mark.parametrize("case", [
    "digital",
    "digital-fixed-point",
    "digital-fixed-point-stochastic",
    "imc",
])
def test_device_run_equals_cpu_run(case, graph, samples):
    """On the (fake) device the simulation completes and its activity equals the CPU run's."""
    target, g = case.split("-")[0], graph
    if "fixed-point" in case:
        rounding = "stochastic" if case.endswith("stochastic") else "nearest"
        g = quantize(graph, QConfig(8, 12, rounding=rounding), samples[:8])
    want = _run(target, g, samples)
    with fake_cuda():
        got = _run(target, g, samples, "cuda")
    _assert_same(got, want)


def test_crossbar_takes_the_float_compare_off_the_cpu(graph, monkeypatch):
    """The int8 sense-amplifier convolution runs on the CPU only: on a device a spiking conv
    layer computes its partial sums in float (and compares them) instead."""
    calls = []
    for name in ("_sense_int8", "_psums"):
        real = getattr(CrossbarSynapse, name)
        monkeypatch.setattr(CrossbarSynapse, name, lambda self, xt, *a, _f=real, _n=name:
                            calls.append((_n, xt.device)) or _f(self, xt, *a))
    tgt = get_target("imc")
    layer = tgt.network(tgt.map(graph)).layers["conv2d2"]              # binary input, integer cells
    x = torch.bernoulli(torch.full((2, *graph.shapes()["lif1"]), 0.3), generator=torch.Generator().manual_seed(0))
    layer(x)
    assert calls == [("_sense_int8", torch.device("cpu"))]
    calls.clear()
    with fake_cuda(), contextlib.suppress(RuntimeError):     # the shift-add after it: see the imc case above
        layer.to("cuda")(x.to("cuda"))
    assert calls == [("_psums", GPU)]


def test_compile_on_the_device_equals_cpu(graph, samples, monkeypatch):
    """The whole compile of a fixed-point graph with device="cuda" (the bit-true run, then the
    float reference) reports what the CPU run reports, and records the device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    g = quantize(graph, QConfig(8, 12), samples[:8])
    want = deploy.compile(g, "digital", samples=16, batch_size=8)
    references = []
    real = pipeline.simulate_float
    monkeypatch.setattr(pipeline, "simulate_float", lambda *a, device: references.append(device) or real(*a, device))
    with fake_cuda():
        got = deploy.compile(g, "digital", samples=16, batch_size=8, device="cuda")
    assert references == [torch.device("cuda")]
    g, w = _dump(got), _dump(want)
    assert g["run"].pop("device") == "cuda" and "device" not in w["run"]
    assert g == w


# -- (a) --device cpu is the default -----------------------------------------------------------

@pytest.mark.parametrize("target", ["digital", "imc"])
def test_cpu_device_equals_default(target):
    default = deploy.compile(MODEL, target, samples=32)
    cpu = deploy.compile(MODEL, target, samples=32, device="cpu")
    assert cpu.accuracy == default.accuracy and cpu.totals.energy_j == default.totals.energy_j
    assert [r.spike_rate for r in cpu.layers] == [r.spike_rate for r in default.layers]
    assert _dump(cpu) == _dump(default)


# -- (b) bad devices: one line, non-zero, before any work ----------------------------------------

def _cli(args, capsys, tmp_path, monkeypatch) -> tuple[int, str]:
    loads = []
    monkeypatch.setattr(pipeline, "resolve_model", lambda *a, **k: loads.append(a))
    capsys.readouterr()
    code = main(["compile", MODEL, "-o", str(tmp_path / "rep"), *args])
    err = capsys.readouterr().err
    assert loads == [] and not (tmp_path / "rep").exists()       # refused before loading the model
    return code, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path, monkeypatch):
    assert _cli(["--device", "cuda"], capsys, tmp_path, monkeypatch) == (2, f"error: {NO_CUDA}\n")


@pytest.mark.parametrize("value, message", [
    ("gpu", "--device gpu: Expected one of cpu, cuda"),
    ("cuda:x", "--device cuda:x: Invalid device string: 'cuda:x'"),
    ("meta", "--device meta: simulations run on cpu or an accelerator"),
])
def test_unknown_device_is_one_line(value, message, capsys, tmp_path, monkeypatch):
    code, err = _cli(["--device", value], capsys, tmp_path, monkeypatch)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--target", "loihi"], ["--compare", "loihi2"]])
def test_cpu_only_target_refuses_a_device(args, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    name = args[1]
    code, err = _cli([*args, "--device", "cuda"], capsys, tmp_path, monkeypatch)
    assert (code, err) == (2, f"error: --device cuda: target '{name}' simulates on the CPU only; "
                              "run it without --device\n")


# -- (c) a real GPU --------------------------------------------------------------------------

@cuda_only
@pytest.mark.parametrize("target", ["digital", "imc"])
def test_cuda_matches_cpu(target, graph):
    x = load_test_set(graph, "digits", 32).x
    cpu, gpu = _run(target, graph, x), _run(target, graph, x, "cuda")
    assert gpu.predictions.device.type == "cpu"
    assert int((gpu.predictions != cpu.predictions).sum()) <= 1
    for name, la in cpu.layers.items():
        assert gpu.layers[name].spikes == pytest.approx(la.spikes, rel=5e-3, abs=0.05), name
