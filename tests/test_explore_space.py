"""deploy explore: space files are checked before anything runs (one line naming the entry),
and points are enumerated and keyed reproducibly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from deploy.explore.space import SpaceError, parse, point_key, point_label, point_seed

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "models" / "digits_snn.pt")
GOOD = {"model": MODEL, "data": "digits", "samples": 16, "seed": 0,
        "targets": {"digital": {}, "imc": {"rows": [64, 128], "bits_per_cell": [1, 2]}},
        "quant": {"weight_bits": [4, 8], "neuron_bits": [8], "scheme": "ptq"},
        "objectives": ["accuracy", "energy"], "search": "grid"}


def _with(**changes):
    doc = copy.deepcopy(GOOD)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return doc


def test_grid_enumerates_every_combination_in_file_order():
    space = parse(GOOD)
    points = space.points()
    # digital: 1 option combination, imc: 2 x 2; each with 2 x 1 x 1 precisions
    assert len(points) == (1 + 4) * 2
    assert [p["target"] for p in points] == ["digital"] * 2 + ["imc"] * 8
    assert points[2] == {"target": "imc", "options": {"rows": 64, "bits_per_cell": 1},
                         "quant": {"weight_bits": 4, "neuron_bits": 8, "scheme": "ptq"}, "finetune": None}
    assert space.directions() == {"accuracy": "max", "energy": "min"}
    assert point_label(points[2]) == "imc rows=64 bits_per_cell=1 w4/n8 ptq"


def test_keys_depend_on_the_configuration_and_context_not_on_dict_order():
    p = {"target": "imc", "options": {"rows": 64, "bits_per_cell": 1}, "quant": None, "finetune": None}
    q = {"finetune": None, "quant": None, "options": {"bits_per_cell": 1, "rows": 64}, "target": "imc"}
    ctx = {"model_sha256": "ab", "data": "digits", "samples": 16, "seed": 0, "split_seed": 0}
    assert point_key(p, ctx) == point_key(q, ctx)
    assert point_key(p, {**ctx, "samples": 32}) != point_key(p, ctx)
    assert point_key(p, {**ctx, "seed": 1}) != point_key(p, ctx)
    other = {**p, "options": {"rows": 128, "bits_per_cell": 1}}
    assert point_key(other, ctx) != point_key(p, ctx)
    assert point_seed(point_key(p, ctx)) == int(point_key(p, ctx)[:8], 16)


def test_finetune_applies_to_imc_points_only_and_optuna_is_parsed():
    doc = _with(targets={"imc": {"rows": [64]}, "imc-adc": {"adc_bits": [3, 4]}}, finetune={"epochs": 2},
                search={"optuna": {"trials": 5}})
    space = parse(doc)
    assert {p["finetune"]["epochs"] for p in space.points()} == {2}
    assert (space.search, space.trials) == ("optuna", 5)


@pytest.mark.parametrize("doc,fragment", [
    (_with(targets={"tpu": {}}), "targets: unknown target 'tpu'"),
    (_with(targets__imc__rowz=[64]), "targets.imc: unknown IMC option 'rowz'"),
    (_with(targets__imc__rows=[]), "targets.imc.rows: empty list of values"),
    (_with(targets__imc__rows=[0, 64]), "targets.imc: option 'rows' must be >= 1, got 0"),
    (_with(targets__imc__bits_per_cell=[1, 9]), "option 'bits_per_cell' = 9 exceeds"),
    (_with(targets={"imc-adc": {"adc_bits": [4, 99]}}), "targets.imc-adc: option 'adc_bits' must be in 1.."),
    (_with(targets={"digital": {"rows": [64]}}), "targets.digital: unknown option 'rows' for target 'digital'"),
    (_with(targets={"loihi": {"backend": ["fast"]}}), "targets.loihi: option 'backend' must be 'reference' or 'lava', got 'fast'"),
    (_with(targets={}), "targets: needs a mapping"),
    (_with(quant__weight_bits=[0]), "quant: "),
    (_with(quant__weight_bits=[]), "quant.weight_bits: empty list of values"),
    (_with(quant__scheme="int8"), "quant: unknown scheme 'int8'"),
    (_with(quant__rounding="nearest"), "quant: unknown key 'rounding'"),
    (_with(objectives=["accuracy", "speed"]), "objectives: unknown objective 'speed'"),
    (_with(objectives=["accuracy", "area"]), "objectives: target 'digital' does not report area"),
    (_with(objectives=["cores"]), "objectives: target 'digital' does not report cores"),
    (_with(search="random"), "search: must be 'grid' or {optuna: {trials: N}}"),
    (_with(search={"optuna": {"trials": 0}}), "search.optuna.trials: must be an integer in 1.."),
    (_with(finetune={"epochs": 1}), "finetune: hardware-aware retraining runs on the IMC targets"),
    (_with(samples=0), "samples: must be an integer >= 1, got 0"),
    (_with(seed=-1), "seed: must be an integer in 0..4294967295"),
    (_with(model=KeyError), "model: needs the path of a model file"),
    (_with(targetz={}), "unknown key 'targetz'"),
    ([1, 2], "a space file is a mapping"),
])
def test_bad_space_is_one_line_naming_the_entry(doc, fragment):
    with pytest.raises(SpaceError) as info:
        parse(doc, "s.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("s.yaml: "), msg
    assert fragment in msg, msg


def test_cli_bad_space_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    from deploy.cli.main import main

    bad = tmp_path / "space.yaml"
    bad.write_text(yaml.safe_dump(_with(targets__imc__rows=[])))
    out = tmp_path / "out"
    code = main(["explore", str(bad), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: {bad}: targets.imc.rows: empty list of values"]
    assert not out.exists()


def test_cli_missing_space_file_and_foreign_output_folder(tmp_path, capsys):
    from deploy.cli.main import main

    assert main(["explore", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none.yaml'}: no such space file"
    good = tmp_path / "space.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    foreign = tmp_path / "report"
    foreign.mkdir()
    (foreign / "report.json").write_text("{}")
    assert main(["explore", str(good), "-o", str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds files that are not an exploration" in err[0], err
    assert sorted(p.name for p in foreign.iterdir()) == ["report.json"]
