"""IMC mapping arithmetic (hand counts) and bad options (one-line TargetError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.imc import ImcAdcTarget, ImcTarget
from hwmodels.spec import load_spec


def _graph(c_in=32, c_out=32, hw=8, fc_out=10, k=3) -> ir.Graph:
    rng = np.random.default_rng(0)
    conv = ir.Conv2d("conv", ["input"], weight=rng.normal(size=(c_out, c_in, k, k)).astype(np.float32),
                     bias=np.zeros(c_out, np.float32), padding=(1, 1))
    n_flat = c_out * hw * hw
    return ir.Graph((c_in, hw, hw), [
        conv, ir.LIF("lif", ["conv"]), ir.Flatten("flat", ["lif"]),
        ir.Linear("fc", ["flat"], weight=rng.normal(size=(fc_out, n_flat)).astype(np.float32)),
        ir.LIF("out", ["fc"])], timesteps=2, encoding="rate").validate()


def test_conv_and_linear_tiling_hand_counts():
    m = ImcTarget().map(_graph(hw=2))
    conv, fc = m.layers["conv"], m.layers["fc"]
    # 3x3 windows: at most 14 channels (126 rows) per 128-row array -> 3 row tiles, 11 + 11 + 10 channels
    assert (conv.tile_units, conv.row_tiles) == (11, 3)
    # 4-bit differential, 1 bit/cell: 3 magnitude slices x 2 polarities = 6 columns per output
    assert conv.slicing.groups == 6 and conv.columns == 32 * 6 and conv.col_tiles == 2
    assert conv.arrays == 6 and conv.rows_used == 288
    assert conv.utilisation(128, 128) == pytest.approx(288 * 192 / (6 * 128 * 128))   # 0.5625
    assert conv.positions == 4 and not conv.analog and conv.planes == 1
    # linear 128 -> 10: one row tile, 60 columns
    assert (fc.rows_used, fc.row_tiles, fc.columns, fc.col_tiles) == (128, 1, 60, 1)
    assert fc.utilisation(128, 128) == pytest.approx(128 * 60 / 128 ** 2)


def test_offset_and_multibit_cells():
    m = ImcTarget(options={"signed": "offset", "rows": 64, "cols": 32}).map(_graph(c_in=8, c_out=4, hw=2))
    conv = m.layers["conv"]
    # offset 4-bit: 4 unsigned slices; offset 8 = 0b1000 -> one dummy column per row tile
    assert conv.slicing.groups == 4 and conv.slicing.dummy_columns() == 1
    assert conv.columns == 4 * 4 + 1 and conv.tile_units == 4 and conv.row_tiles == 2
    assert conv.col_tiles == 1 and conv.arrays == 2
    m2 = ImcAdcTarget(options={"bits_per_cell": 2, "weight_bits": 6}).map(_graph(c_in=2, c_out=4, hw=2))
    sl = m2.layers["conv"].slicing        # 5 magnitude bits in 2-bit cells -> 3 slices per polarity
    assert (sl.n_slices, sl.groups, sl.levels) == (3, 6, 4)
    assert sl.coefs().tolist() == [1, 4, 16, -1, -4, -16]


def test_analog_inputs_become_bit_planes():
    g = _graph(c_in=1, c_out=2, hw=4)
    g.encoding = "direct"
    m = ImcTarget(options={"input_bits": 5}).map(g)
    assert m.layers["conv"].analog and m.layers["conv"].planes == 5
    assert not m.layers["fc"].analog


def test_kernel_window_taller_than_array_is_a_violation():
    t = ImcTarget(options={"rows": 8})
    v = t.check(_graph(c_in=2, c_out=2, hw=2))
    assert [(x.layer, x.need, x.limit) for x in v] == [("conv", 9, 8)]
    with pytest.raises(TargetError, match="conv"):
        t.map(_graph(c_in=2, c_out=2, hw=2))


@pytest.mark.parametrize("options, message", [
    ({"rows": 0}, "'rows' must be >= 1"),
    ({"cols": -4}, "'cols' must be >= 1"),
    ({"bits_per_cell": 5}, "exceeds the 4 bits per cell"),
    ({"signed": "twos"}, "'signed' must be one of"),
    ({"variation": -0.1}, "'variation'"),
    ({"stuck_on": 0.7, "stuck_off": 0.6}, "exceed 1"),
    ({"colums": 64}, "unknown IMC option 'colums'"),
    ({"sa_reference": 0}, "'sa_reference' must be > 0"),
])
def test_bad_options_one_line(options, message):
    with pytest.raises(TargetError, match=message) as exc:
        ImcTarget(options=options)
    assert "\n" not in str(exc.value)


def test_weights_that_do_not_fit_the_precision():
    g = _graph(c_in=2, c_out=2, hw=2)
    conv = g["conv"]
    conv.weight_scale = np.array([0.5], np.float32)
    conv.weight = (np.arange(36).reshape(2, 2, 3, 3) - 18).astype(np.float32) * 0.5    # codes -18..17
    conv.precision = {"weight": 8}
    with pytest.raises(TargetError, match="8-bit weights do not fit the configured weight_bits = 4"):
        ImcTarget(options={"weight_bits": 4}).map(g)
    conv.precision = {"weight": 4}
    with pytest.raises(TargetError, match="do not fit 4-bit differential"):
        ImcTarget().map(g)
    conv.weight = conv.weight + 0.1
    conv.precision = {"weight": 8}
    with pytest.raises(TargetError, match="not integer multiples"):
        ImcTarget().map(g)


def test_spec_missing_constant(tmp_path):
    doc = yaml.safe_load(Path(load_spec("imc").path).read_text())
    del doc["constants"]["sa_latency_s"]
    path = tmp_path / "imc.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TargetError, match="missing constant 'sa_latency_s'"):
        ImcTarget(spec=load_spec(path))


def test_shared_spec_and_config(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("options: {rows: 64, cols: 64, adc_bits: 4}\nconstants: {flash_latency_s: 8.0e-9}\n")
    a, b = ImcTarget.from_config(str(cfg)), ImcAdcTarget.from_config(str(cfg))
    assert a.config.rows == b.config.rows == 64
    assert (a.config.adc_bits, b.config.adc_bits, b.config.adc_share) == (1, 4, 8)
    assert b.spec["flash_latency_s"] == 8.0e-9


def test_retrained_steps_ignored_after_requantization():
    """A retrained model requantized to another weight precision maps exactly as the same
    weights without retraining metadata, and says why its learned steps were dropped."""
    from deploy.io import native
    from quant.ptq import QConfig, quantize_all_weights

    retrained = native.load(Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn_imc.pt")
    target = ImcTarget()
    learned_groups = len(next(iter(retrained.meta["imc"]["steps"].values())))
    requantized = quantize_all_weights(retrained, QConfig(weight_bits=8))
    mapping = target.map(requantized)
    plain = requantized.copy()
    plain.meta = {k: v for k, v in requantized.meta.items() if k != "imc"}
    reference = target.map(plain)
    first = next(iter(mapping.layers.values()))
    assert first.slicing.groups != learned_groups                # the precision really changed the groups
    assert "steps were learned for" in mapping.notes[0]
    for name, lm in mapping.layers.items():
        assert np.array_equal(lm.steps, reference.layers[name].steps)
        assert np.array_equal(lm.codes, reference.layers[name].codes)
        assert lm.trims is None or np.array_equal(lm.trims, reference.layers[name].trims)
