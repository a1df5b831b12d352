"""NIR graphs written by other frameworks' own exporters import here and spike as those frameworks do.

Each test builds a small network in the framework (norse, Sinabs, snnTorch), exports it with the
framework's exporter, imports it, and compares our float simulation with the framework's own
forward pass on the same digits test inputs (direct current repeated over T steps), layer by layer.
Weights are random (scaled so that every layer spikes); accuracy is not the point here.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import deploy
from deploy.cli import main
from deploy.core import data
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet
from deploy.io.nir_io import from_nir, writable

torch.set_num_threads(1)
N, SAMPLES = 48, 16  # inputs compared with the framework; samples each target compiles
TARGETS = ("digital", "imc", "loihi")


def digits_x(n: int = N) -> torch.Tensor:
    return data.load("digits").x_test[:n]


def ours(graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-layer outputs (T, B, ...) of our float simulation, input x repeated over T steps."""
    xt = x.unsqueeze(0).expand(graph.timesteps, *x.shape).contiguous()
    with torch.no_grad():
        return SpikingNet(graph).run(xt, record=True, encoded=True)[1]


def recorder(modules: dict[str, torch.nn.Module], pick=lambda o: o) -> dict[str, list]:
    """Forward hooks that append each module's output (through ``pick``) to a list per name."""
    rec: dict[str, list] = {k: [] for k in modules}
    for key, m in modules.items():
        m.register_forward_hook(lambda _m, _a, out, key=key: rec[key].append(pick(out).detach().clone()))
    return rec



def compile_everywhere(graph, spikes_per_inference: float) -> None:
    """Compiles on every target; the float digital target counts the framework's spikes."""
    for target in TARGETS:
        rep = deploy.compile(graph, target=target, data="digits", samples=SAMPLES)
        assert rep.accuracy.samples == SAMPLES and rep.totals.energy_j > 0, target
        assert [r.name for r in rep.layers] == [n.name for n in graph.nodes], target
        if target == "digital":
            assert rep.totals.spikes == pytest.approx(spikes_per_inference, rel=1e-9)


# -- norse ------------------------------------------------------------------------------------------
T_NORSE = 16


@pytest.fixture(scope="module")
def norse_case(tmp_path_factory):
    norse = pytest.importorskip("norse.torch", reason="norse is not installed (pip install --no-deps "
                                "norse==1.1.0 nirtorch)")
    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Linear(64, 32), norse.LIFBoxCell(), torch.nn.Linear(32, 10),
                                norse.LIFBoxCell())
    with torch.no_grad():  # random weights scaled so that both spiking layers fire
        net[0].weight *= 10
        net[0].bias += 0.3
        net[2].weight *= 25
        net[2].bias += 0.5
    rec = recorder({"1": net[1], "3": net[3]}, pick=lambda o: o[0])
    x = digits_x().reshape(N, 64)
    state = None
    with torch.no_grad():  # norse's own simulation, at its default dt = 1e-3
        for _ in range(T_NORSE):
            _, state = net(x, state)
    ref = {k: torch.stack(v) for k, v in rec.items()}
    graph = norse.to_nir(net, torch.randn(1, 64))
    path = tmp_path_factory.mktemp("norse") / "norse.nir"
    nir.write(path, writable(norse.to_nir(net, torch.randn(1, 64))))
    return graph, path, ref


def test_norse_file_spikes_like_norse(norse_case):
    graph, path, ref = norse_case
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(path)  # NIR's own type check rejects norse's batch dimension; we read without it
    for source in (graph, path):  # the exporter's in-memory graph and the file a norse user writes
        g = deploy.load_model(source, dt=1e-6, timesteps=T_NORSE) if source is path else \
            from_nir(source, dt=1e-6, timesteps=T_NORSE)
        assert g.input_shape == (64,) and [n.kind for n in g.nodes] == ["linear", "lif"] * 2
        assert g["1"].beta == pytest.approx(0.9) and g["1"].reset == "zero"
        got = ours(g, digits_x().reshape(N, 64))
        for layer in ("1", "3"):
            assert torch.equal(got[layer], ref[layer]), f"layer {layer}: spikes differ from norse"
            assert ref[layer].sum() > 0.02 * ref[layer].numel(), f"layer {layer} is nearly silent"


def test_norse_li_readout_follows_norse_and_loihi_says_it_cannot_run_it():
    norse = pytest.importorskip("norse.torch", reason="norse is not installed")
    torch.manual_seed(2)
    net = norse.SequentialState(torch.nn.Linear(64, 10), norse.LIBoxCell())
    rec = recorder({"1": net[1]}, pick=lambda o: o[0])
    x, state = digits_x().reshape(N, 64), None
    with torch.no_grad():
        for _ in range(T_NORSE):
            _, state = net(x, state)
    ref = torch.stack(rec["1"])
    g = from_nir(norse.to_nir(net, torch.randn(1, 64)), dt=1e-6, timesteps=T_NORSE)
    assert g["1"].kind == "li" and g["1"].beta == pytest.approx(0.9)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours(g, x)["1"], ref, rtol=1e-4, atol=1e-5)  # membrane, float rounding only
    with pytest.raises(deploy.core.errors.TargetError, match=r"^layer '1': layer type 'li' is not supported on "
                                                        r"target 'loihi'"):
        deploy.compile(g, target="loihi", data="digits", samples=4)


def test_norse_file_without_dt_names_the_dt_that_reproduces_norse(norse_case):
    graph, path, ref = norse_case
    with pytest.raises(ModelError, match=r"^layer '1': tau = 1e-05 s .* \(--dt 1e-06 gives decay 0\.9;"):
        deploy.load_model(path)


def test_norse_file_compiles_on_every_target(norse_case):
    _, path, ref = norse_case
    g = deploy.load_model(path, dt=1e-6, timesteps=T_NORSE, encoding="direct")
    compile_everywhere(g, float(sum(ref[k][:, :SAMPLES].sum() for k in ("1", "3"))) / SAMPLES)


def test_cli_compiles_a_norse_file_with_dt(norse_case, tmp_path, capsys):
    _, path, ref = norse_case
    out = tmp_path / "rep"
    args = ["compile", str(path), "--target", "digital", "--data", "digits", "--samples", "8",
            "--timesteps", str(T_NORSE), "--no-figures", "-o", str(out)]
    assert main(args[:2] + ["--dt", "1e-6"] + args[2:]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["spikes"] == pytest.approx(float(sum(ref[k][:, :8].sum() for k in ("1", "3"))) / 8)
    assert main(args[:-1] + [str(tmp_path / "nodt")]) == 2
    err = capsys.readouterr().err
    assert "--dt SECONDS" in err and "--dt 1e-06 gives decay 0.9" in err
    assert not (tmp_path / "nodt").exists()


# -- Sinabs -----------------------------------------------------------------------------------------
T_SINABS = 12


def sinabs_cnn(reset_fn):
    """A Speck-style CNN (no biases, IAF neurons, sum pooling) with one spike per step."""
    sl = pytest.importorskip("sinabs.layers", reason="sinabs is not installed (pip install --no-deps "
                             "sinabs==3.1.3 pbr nirtorch)")
    from sinabs.activation import SingleSpike

    def iaf():
        return sl.IAFSqueeze(batch_size=N, spike_fn=SingleSpike, reset_fn=reset_fn)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False), iaf())
    with torch.no_grad():
        for i in (0, 3, 7):
            net[i].weight *= 2
    return net


def sinabs_run(net) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Sinabs' own forward, (batch*time) flattened as IAFSqueeze takes it; per-IAF spikes as (T, B, ...)."""
    rec = recorder({"1": net[1], "4": net[4], "8": net[8]})
    xs = digits_x().unsqueeze(1).expand(N, T_SINABS, 1, 8, 8).reshape(N * T_SINABS, 1, 8, 8)
    with torch.no_grad():
        net(xs)
    for m in (net[1], net[4], net[8]):
        m.reset_states()
    ref = {k: v[0].reshape(N, T_SINABS, *v[0].shape[1:]).transpose(0, 1) for k, v in rec.items()}
    return ref, xs


@pytest.fixture(scope="module")
def sinabs_case(tmp_path_factory):
    sinabs = pytest.importorskip("sinabs", reason="sinabs is not installed")
    from sinabs.activation import MembraneReset

    net = sinabs_cnn(MembraneReset())
    ref, xs = sinabs_run(net)
    graph = sinabs.to_nir(net, xs)
    graph.infer_types()  # fills the conv input shapes nir.write needs (as Sinabs users must)
    path = tmp_path_factory.mktemp("sinabs") / "speck.nir"
    nir.write(path, graph)
    return path, ref


def test_sinabs_file_spikes_like_sinabs(sinabs_case):
    path, ref = sinabs_case
    g = deploy.load_model(path, timesteps=T_SINABS)
    assert g.input_shape == (1, 8, 8)
    assert [n.kind for n in g.nodes] == ["conv2d", "lif", "pool2d", "conv2d", "lif", "pool2d", "flatten",
                                         "linear", "lif"]
    assert g["1"].beta == 1.0 and g["1"].reset == "zero" and g["2"].mode == "sum"
    got = ours(g, digits_x())
    for layer in ("1", "4", "8"):
        assert torch.equal(got[layer], ref[layer]), f"layer {layer}: spikes differ from Sinabs"
        assert ref[layer].sum() > 0.02 * ref[layer].numel(), f"layer {layer} is nearly silent"


def test_sinabs_subtractive_reset_needs_the_metadata():
    sinabs = pytest.importorskip("sinabs", reason="sinabs is not installed")
    from sinabs.activation import MembraneSubtract

    net = sinabs_cnn(MembraneSubtract())  # Sinabs' default reset; NIR's IF resets to v_reset
    ref, xs = sinabs_run(net)
    graph = sinabs.to_nir(net, xs)
    plain = ours(from_nir(graph, timesteps=T_SINABS), digits_x())
    assert not torch.equal(plain["1"], ref["1"])  # the file alone says "reset to 0"
    for node in graph.nodes.values():
        if isinstance(node, nir.IF):
            node.metadata["reset"] = "subtract"
    got = ours(from_nir(graph, timesteps=T_SINABS), digits_x())
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_sinabs_file_compiles_on_every_target(sinabs_case):
    path, ref = sinabs_case
    g = deploy.load_model(path, timesteps=T_SINABS, encoding="direct")
    compile_everywhere(g, float(sum(v[:, :SAMPLES].sum() for v in ref.values())) / SAMPLES)


# -- snnTorch Synaptic -> CubaLIF -------------------------------------------------------------------
def test_snntorch_synaptic_cubalif_spikes_like_snntorch():
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed")
    from snntorch import export_nir, utils

    torch.manual_seed(1)
    kw = {"reset_mechanism": "zero", "reset_delay": False, "init_hidden": True}  # NIR: reset to 0 at once
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), snn.Synaptic(alpha=0.5, beta=0.8, **kw),
                              torch.nn.Linear(32, 10), snn.Synaptic(alpha=0.7, beta=0.9, output=True, **kw))
    with torch.no_grad():
        net[0].weight *= 4
        net[2].weight *= 4
    try:
        graph = export_nir.export_to_nir(net, torch.randn(1, 64))
    except ValueError:  # snnTorch 1.0 + nir 1.0.8: type inference fails on its 0-d parameters
        nodes = {"input": nir.Input(input_type={"input": np.array([1, 64])}),
                 **{str(i): export_nir._extract_snntorch_module(m) for i, m in enumerate(net)},
                 "output": nir.Output(output_type={"output": np.array([1, 10])})}
        keys = list(nodes)
        graph = nir.NIRGraph(nodes=nodes, edges=list(zip(keys, keys[1:], strict=False)), type_check=False)
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    rec = recorder({"1": net[1], "3": net[3]}, pick=lambda o: o[0] if isinstance(o, tuple) else o)
    x = digits_x().reshape(N, 64)
    utils.reset(net)
    with torch.no_grad():
        for _ in range(10):
            net(x)
    ref = {k: torch.stack(v) for k, v in rec.items()}
    g = from_nir(graph, dt=1e-4, timesteps=10)  # snnTorch's export step
    assert g["1"].alpha == pytest.approx(0.5) and g["1"].beta == pytest.approx(0.8)
    np.testing.assert_allclose(g["0"].weight, net[0].weight.detach().numpy(), rtol=1e-5)  # gain 1
    got = ours(g, x)
    for layer in ("1", "3"):
        assert torch.equal(got[layer], ref[layer]), f"layer {layer}: spikes differ from snnTorch"
        assert ref[layer].sum() > 0.02 * ref[layer].numel(), f"layer {layer} is nearly silent"
