"""lava-dl's own netx loader reads what ``deploy netx`` writes, and the network it builds runs in
Lava spike for spike like our bit-exact reference (with netx's timing: biases on from step 0).

Skipped without lava-dl (``pip install --no-deps lava-dl==0.6.0 ...``, see hwmodels/loihi/README.md).
Lava runs samples one by one (here about 1 s per CNN sample, 0.1 s per MLP sample, reading every
layer's spikes included), so the sample counts keep the file under a minute.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch

netx_hdf5 = pytest.importorskip("lava.lib.dl.netx.hdf5", reason="lava-dl (lava.lib.dl.netx) is not installed")

from deploy.core import ir  # noqa: E402
from deploy.io import native  # noqa: E402
from hwmodels.loihi import Loihi1Target, netx, reference  # noqa: E402
from hwmodels.loihi.lava_backend import run_netx  # noqa: E402
from hwmodels.loihi.network import encode_input, lava_dense_weights, sign_mode_of  # noqa: E402

MODELS = {"digits_snn_zero": 16, "digits_mlp": 48}      # samples run in Lava per model


def _deploy_netx(model, out):
    import typer
    from typer.testing import CliRunner

    from deploy.cli.netx import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)                  # keep typer in multi-command mode
    res = CliRunner().invoke(app, ["netx", str(model), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return res.output


def _table(net) -> list[list[str]]:
    """Rows of netx's printed layer table: [type, W, H, C, ker, str, pad, dil, grp, delay]."""
    rows = [line.strip("|").split("|") for line in str(net).splitlines()[1:]]
    return [[c.strip() for c in r] for r in rows]


def _expected_rows(graph: ir.Graph) -> list[list[str]]:
    """The table netx should print, from the graph itself (shapes in Lava's W, H, C order)."""
    shapes, rows = graph.shapes(), []
    for node in graph.nodes:
        if isinstance(node, ir.Conv2d):
            c, h, w = shapes[node.name]
            pair = [f"{a:2d},{b:2d}".replace(" ", "") for a, b in (node.weight.shape[:1:-1], node.stride[::-1],
                                                                   node.padding[::-1], node.dilation[::-1])]
            rows.append(["Conv", str(w), str(h), str(c), *pair, str(node.groups), "False"])
        elif isinstance(node, ir.Linear):
            rows.append(["Dense", "1", "1", str(shapes[node.name][0]), "", "", "", "", "", "False"])
    return rows


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory, shipped_path):
    name = request.param
    model = shipped_path.parent / f"{name}.pt"
    path = tmp_path_factory.mktemp(name) / f"{name}.net"
    output = _deploy_netx(model, path)
    graph = native.load(model)
    mapping = Loihi1Target(options={"netx": True, "bias_exp": 6}).map(graph)     # what the command maps
    return name, graph, mapping.network, path, output


def test_lava_dl_reads_the_file_with_our_layer_table(exported):
    name, graph, net, path, _ = exported
    lava_net = netx_hdf5.Network(net_config=str(path), input_message_bits=8)
    rows = [[re.sub(r"\s", "", c) for c in r] for r in _table(lava_net)]
    assert rows == _expected_rows(graph)
    assert len(lava_net.layers) == len(net.populations)
    for block, pop in zip(lava_net.layers, net.populations, strict=True):
        assert tuple(block.shape) == tuple(pop.shape[::-1]), pop.name          # Lava (W, H, C)
        assert int(block.neuron.vth.init) == pop.vth and int(block.neuron.bias_exp.init) == 6
        assert int(block.neuron.du.init) == pop.du and int(block.neuron.dv.init) == pop.dv
    assert tuple(lava_net.inp.shape) == tuple(graph.input_shape[::-1])


def test_lava_dl_network_runs_spike_for_spike_like_the_reference(exported, digits_split):
    name, graph, net, path, _ = exported
    n = MODELS[name]
    xq = encode_input(net, digits_split.x_test[:n])
    t0 = time.perf_counter()
    lava = run_netx(path, xq, input_message_bits=8)
    seconds = time.perf_counter() - t0
    ref = reference.run(net, xq, timing="netx")
    total = 0
    for pop, spikes in zip(net.populations, lava, strict=True):
        assert spikes.shape == ref[pop.name].shape
        assert torch.equal(spikes, ref[pop.name].to(torch.uint8)), f"{pop.name}: {(spikes != ref[pop.name]).sum()}"
        total += int(spikes.sum())
    out = lava[-1]
    assert out.sum() > 0 and total > 10 * n                                    # a live network, not all zeros
    # netx's timing is not ours: with biases switched on per layer the spikes differ
    own = reference.run(net, xq)
    assert any(not torch.equal(own[p.name], ref[p.name]) for p in net.populations)
    print(f"{name}: {n} samples, {total} spikes equal over {len(net.populations)} layers x {net.steps} steps, "
          f"{seconds:.1f} s in Lava (compile included)")


def test_weight_format_mirror_matches_lava_dl():
    from lava.lib.dl.netx.utils import optimize_weight_bits

    rng = np.random.default_rng(0)
    cases = [rng.integers(-256, 255, (6, 9)), rng.integers(-30, 30, (5, 7)) * 2, rng.integers(0, 200, (4, 4)),
             -rng.integers(1, 100, (4, 4)), np.array([[-128, -3, -64]]), np.array([[0, 3, 5]]),
             np.array([[-300, 400, 7]]), np.array([[-3, 5]]), rng.integers(-8, 8, (3, 3)) * 32]
    for w in cases:
        theirs = optimize_weight_bits(w.astype(int))
        ours = netx.netx_weight_bits(w)
        assert np.array_equal(theirs[0], ours[0]) and theirs[1:3] == ours[1:3], w
        eff = netx.netx_dense_effective(w)
        lava_w = lava_dense_weights(theirs[0], theirs[1], sign_mode_of(theirs[0]))
        exact = bool(np.all(lava_w % (1 << -theirs[2]) == 0))
        assert (eff is not None) == exact
        if exact:
            assert np.array_equal(eff, lava_w >> -theirs[2])
