"""The fast paths of the crossbar simulation give the same bits as the reference ones: the int8
sense-amplifier convolution vs the float partial sums, the exact shift-add vs the GEMM, chunked
vs one-call, direct-encoded frames computed once vs every timestep; and their helpers against
hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.imc import ImcAdcTarget, ImcTarget
from hwmodels.imc import crossbar as cb


def _conv(name: str, src: str, c_in: int, c_out: int, rng: np.random.Generator) -> ir.Conv2d:
    return ir.Conv2d(name, [src], weight=rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32),
                     bias=np.full(c_out, 0.1, np.float32), padding=(1, 1))


def _spiking_net(encoding: str = "rate", channels: int = 2) -> ir.Graph:
    """conv - LIF - conv (three row tiles) - LIF - max pool - flatten - linear (five row tiles) - LIF."""
    rng = np.random.default_rng(0)
    nodes = [_conv("conv1", "input", channels, 6, rng), ir.LIF("lif1", ["conv1"], beta=0.9, threshold=0.5),
             _conv("conv2", "lif1", 6, 5, rng), ir.LIF("lif2", ["conv2"], beta=0.9, threshold=0.5),
             ir.Pool2d("pool", ["lif2"], mode="max"), ir.Flatten("flat", ["pool"]),
             ir.Linear("fc", ["flat"], weight=rng.normal(size=(4, 80)).astype(np.float32), bias=None),
             ir.LIF("out", ["fc"], beta=0.9, threshold=0.5)]
    return ir.Graph((channels, 8, 8), nodes, timesteps=4, encoding=encoding).validate()


def _learned_steps(mapping, seed: int = 3) -> None:
    """Steps and trims as retraining leaves them: not multiples of a common power of two."""
    rng = np.random.default_rng(seed)
    for lm in mapping.layers.values():
        lm.steps[:] = 0.5 + rng.random(lm.slicing.groups) * 3
        lm.trims = rng.normal(scale=0.7, size=lm.column_count).astype(np.float32)


def _run(tgt, mapping, x, encoded=True, int8=True):
    net = tgt.network(mapping)
    if not int8:
        for m in net.synapses():
            m.w_int8 = None
    with torch.no_grad():
        _, rec = net.run(x, record=True, encoded=encoded)
    return rec, net.pop_counters()


def _spikes():
    return (torch.rand(4, 6, 2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()


@pytest.mark.parametrize("learned", [False, True])
def test_int8_path_equals_float_path(learned):
    """Spikes and counters of the int8 sense-amplifier path equal those of the float partial sums
    compared with the references (the path without int8 kernels); with the default steps
    (exact shift-add) every layer's output is bit-identical too."""
    tgt = ImcTarget(options={"rows": 18})
    mapping = tgt.map(_spiking_net())
    assert mapping.layers["conv2"].row_tiles == 3 and mapping.layers["fc"].row_tiles == 5
    if learned:
        _learned_steps(mapping)
    x = _spikes()
    fast, fast_counts = _run(tgt, mapping, x)
    ref, ref_counts = _run(tgt, mapping, x, int8=False)
    assert tgt.network(mapping).layers["conv2"].w_int8 is not None
    for lif in ("lif1", "lif2", "out"):
        assert torch.equal(fast[lif], ref[lif]), lif
        assert 0 < float(fast[lif].mean()) < 1, lif                 # every layer fires, not always
    assert fast_counts == ref_counts
    for syn in ("conv1", "conv2", "fc"):
        if learned:
            torch.testing.assert_close(fast[syn], ref[syn], atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(fast[syn], ref[syn]), syn


@pytest.mark.parametrize("cls", [ImcTarget, ImcAdcTarget])
def test_exact_shift_add_equals_gemm(cls, monkeypatch):
    """With steps that are multiples of a power of two the shift-add adds counts times
    coefficients (the int8 path always does); the float path's GEMM of every coefficient (its path
    when the terms are not exact) gives the same bits as the int8 and the float path, with 1-bit
    SAs and with flash ADCs."""
    tgt = cls(options={"rows": 18, "adc_bits": 1 if cls is ImcTarget else 3})
    mapping = tgt.map(_spiking_net())
    for lm in mapping.layers.values():
        lm.steps[:] = [0.75, 1.5, 2.0, 0.5, 1.25, 3.0][:lm.slicing.groups]
    x = _spikes()
    for int8 in (True, False):
        fast, fast_counts = _run(tgt, mapping, x, int8=int8)
        with monkeypatch.context() as m:
            m.setattr(cb, "_exact_terms", lambda coef, top: None)
            gemm, gemm_counts = _run(tgt, mapping, x, int8=False)
        assert fast_counts == gemm_counts
        for key in fast:
            assert torch.equal(fast[key], gemm[key]), key


def test_chunks_and_repeated_frames_equal_one_call(monkeypatch):
    """A direct-encoded analog input repeats at every timestep: its first layer is computed
    once per sample and copied; in chunks of frames or in one call, with or without that, the
    network's outputs and counters are the same bits."""
    tgt = ImcTarget(options={"rows": 18})
    graph = _spiking_net("direct", channels=3)
    mapping = tgt.map(graph)
    _learned_steps(mapping)                                    # the GEMM shift-add
    assert mapping.layers["conv1"].analog and mapping.layers["conv1"].planes == 4
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    frames = []
    real = cb.CrossbarSynapse._chunked_sense_reduce
    monkeypatch.setattr(cb.CrossbarSynapse, "_chunked_sense_reduce",
                        lambda self, xt: frames.append((self.lm.name, xt.shape[0])) or real(self, xt))
    want, want_counts = _run(tgt, mapping, x, encoded=False)
    assert ("conv1", 4 * 3) in frames                     # 4 planes x 3 samples, not x 4 timesteps
    monkeypatch.setattr(cb, "SENSE_CHUNK", 5 * 6 * 6 * 64)   # 5 frames of conv1's counts per chunk
    chunked, chunked_counts = _run(tgt, mapping, x, encoded=False)
    net = tgt.network(mapping)
    for m in net.synapses():
        m.timesteps = 1                                    # every frame computed
    with torch.no_grad():
        _, every = net.run(x, record=True)
    every_counts = net.pop_counters()
    assert want_counts == chunked_counts == every_counts
    for key in want:
        assert torch.equal(want[key], chunked[key]) and torch.equal(want[key], every[key]), key


@pytest.mark.parametrize("tiles", [1, 3, 5, 300])
def test_count_fired_counts_tiles(tiles):
    """Firing tiles per column from the 0/255 SA bytes, against a direct count (every tile count
    path: byte planes, one pass, int32 above 255 tiles)."""
    gen = torch.Generator().manual_seed(tiles)
    fired = ((torch.rand(2, tiles * 3, 4, 5, generator=gen) < 0.9).to(torch.uint8) * 255)
    fired = fired.contiguous(memory_format=torch.channels_last)
    want = (fired == 255).view(2, tiles, 3, 4, 5).sum(1)
    got = cb._count_fired(fired, tiles)
    assert got.shape == want.shape and torch.equal(got.long(), want)
    if tiles == 300:
        assert int(want.max()) > 255                       # beyond a byte


def test_exact_terms_hand_checked():
    f32 = torch.tensor
    assert cb._exact_terms(f32([1.0, 2.0, 4.0, -1.0, -2.0, -4.0]), 19) == [1.0, 2.0, 4.0, -1.0, -2.0, -4.0]
    assert cb._exact_terms(f32([0.5, 0.25, 0.0]), 2) == [0.5, 0.25, 0.0]
    assert cb._exact_terms(f32([2.0 ** 20]), 15) is not None            # 15 * 2**20 < 2**24 * 2**20
    assert cb._exact_terms(f32([1.0, 2.0 ** -23]), 1) is not None       # 2**23 + 1 units of 2**-23
    assert cb._exact_terms(f32([1.0, 2.0 ** -23]), 2) is None           # 2 * (2**23 + 1) units
    assert cb._exact_terms(f32([0.1]), 1) is not None                   # one term: one rounding, exact
    assert cb._exact_terms(f32([0.1, 0.2]), 1) is None                  # 0.1 + 0.2 rounds


def test_binary_check_where_inputs_can_be_non_binary():
    """Layers reading the encoded input check that it is binary; layers reading a LIF's spikes
    (through max pooling and flatten too) do not need to."""
    tgt = ImcTarget(options={"rows": 18})
    net = tgt.network(tgt.map(_spiking_net()))
    assert [m.check_input for m in net.synapses()] == [True, False, False]
    x = _spikes()
    x[0, 0, 0, 0, 0] = 0.5
    with pytest.raises(TargetError, match="layer 'conv1': expected binary spikes"), torch.no_grad():
        net.run(x, encoded=True)
