"""Typed target options: strict, frozen schemas; every rejection names the option."""

from __future__ import annotations

import pytest

from deploy.core.errors import TargetError
from hwmodels import get_target
from hwmodels.digital import DigitalTarget
from hwmodels.loihi import Loihi1Target, Loihi2Target
from hwmodels.loihi.fixed_point import Formats


@pytest.mark.parametrize("cls", [Loihi1Target, Loihi2Target])
@pytest.mark.parametrize("key, value", [("input_bits", "x"), ("saturate", "no"), ("chips", True),
                                        ("chips", 1.5), ("netx", 1), ("scale", "big"), ("backend", "hw"),
                                        ("input_bits", 17), ("bias_exp", 8), ("strict_reset", "yes")])
def test_loihi_rejects_a_bad_value_by_the_option_name(cls, key, value):
    with pytest.raises(TargetError, match=rf"option '{key}' must ") as exc:
        cls(options={key: value})
    assert "\n" not in str(exc.value)


def test_loihi_options_reach_the_fixed_point_formats():
    tgt = Loihi1Target(options={"input_bits": 4, "saturate": True, "scale": 100, "chips": 2})
    f = tgt.formats()
    assert (f.input_bits, f.saturate, f.scale, f.bias_exp) == (4, True, 100.0, 6)
    assert tgt.limits().chips == 2
    default = Formats.from_spec(tgt.spec, Loihi1Target().config)
    assert default.input_bits == int(tgt.spec["input_bits"]) and default.scale is None
    assert Loihi1Target(options={"scale": "auto"}).formats().scale is None


def test_options_are_immutable_and_changed_by_a_new_target():
    tgt = Loihi1Target(options={"chips": 1})
    with pytest.raises(TypeError):
        tgt.options["chips"] = 2
    with pytest.raises(ValueError, match="frozen"):
        tgt.config.chips = 2
    netx = tgt.with_options(netx=True, bias_exp=6)
    assert netx.config.netx and netx.config.chips == 1 and netx.spec is tgt.spec
    assert not tgt.config.netx and dict(tgt.options) == {"chips": 1}
    with pytest.raises(TargetError, match="option 'chips'"):
        tgt.with_options(chips=True)


def test_digital_takes_no_options_and_config_files_are_checked(tmp_path):
    with pytest.raises(TargetError, match="unknown option 'pe' for target 'digital' \\(it takes no options"):
        DigitalTarget(options={"pe": 4})
    cfg = tmp_path / "loihi.yaml"
    cfg.write_text("options:\n  saturate: 'no'\n")
    with pytest.raises(TargetError, match="option 'saturate' must be a valid boolean, got 'no'"):
        get_target("loihi", str(cfg))
    cfg.write_text("options:\n  chips: 3\n  saturate: true\n")
    tgt = get_target("loihi2", str(cfg))
    assert tgt.config.chips == 3 and tgt.config.saturate is True
    assert tgt.describe()["options"] == {"chips": 3, "saturate": True}
