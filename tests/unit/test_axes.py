"""The matrix's axes are declared once, on the Cell's fields: a throwaway axis shows that the id grammar, the
summary's columns, pending and pruned rows, the tables' columns and the charts' panels follow its declaration;
every declaration is held to the schema, the precision table and the mesh kinds."""

import dataclasses
import json
import re

import polars as pl
import pytest
import yaml
from helpers import cell

from ftbench import precision
from ftbench.cell import AXES, Cell, axis
from ftbench.errors import ConfigError
from ftbench.plan.config import METRIC_COLUMNS, summary_columns
from ftbench.registry import MESH_KINDS, STRATEGIES
from ftbench.report import aggregate, charts, tables

AttentionCell = dataclasses.make_dataclass(
    "AttentionCell",
    [("attention", str, axis("sdpa", key="attention", tag="attn", header="attention", after="precision", label="a "))],
    bases=(Cell,),
    frozen=True,
)
"""A cell type with one more axis, declared as a new knob would be."""


def attention_cell(attention: str, **fields) -> Cell:
    return AttentionCell(**{**cell(**fields).all_fields(), "attention": attention})


def test_a_new_axis_leaves_every_existing_id_and_record_as_it_was():
    plain = cell("fsdp", 2, activation_checkpointing="full")
    same = attention_cell("sdpa", strategy="fsdp", gpus=2, activation_checkpointing="full")
    assert same.id == plain.id == "m/fsdp/2gpu/full-fp32-bs8-seq64-ac-full"
    assert same.to_dict() == plain.to_dict()


def test_a_new_axis_gets_its_id_segment_parser_and_wildcard():
    flash = attention_cell("flash", strategy="fsdp", gpus=2, activation_checkpointing="full")
    assert flash.id == "m/fsdp/2gpu/full-fp32-bs8-seq64-ac-full-attn-flash"
    grammar = AttentionCell.grammar()
    assert grammar.parse(flash.id)["attention"] == "flash" and grammar.parse(cell().id)["attention"] == "sdpa"
    assert grammar.options_wildcard.endswith("(?:-attn-(?:[a-z0-9.]+))?")
    assert AttentionCell.from_dict(flash.to_dict()) == flash


def test_a_new_axis_is_a_summary_column_and_in_pending_and_pruned_rows():
    columns = summary_columns(AttentionCell.axes())
    assert columns[: columns.index("status")] == ("cell_id", *(a.field for a in AXES), "attention")
    assert columns[columns.index("status") :] == METRIC_COLUMNS
    flash = attention_cell("flash")
    row = aggregate.pending_row(flash.to_dict(), "pruned", cell_type=AttentionCell)
    assert row == {"cell_id": flash.id, **{a.field: getattr(flash, a.field) for a in AXES}, "attention": "flash"} | {
        "status": "pruned"
    }


def test_a_new_axis_gets_its_table_column_only_where_a_cell_is_off_its_default():
    def headers(*values):
        rows = pl.DataFrame({"attention": list(values), "activation_checkpointing": ["none"] * len(values)})
        return [h for h, _, _ in tables.columns_for(rows, AttentionCell.axes())]

    assert "attention" not in headers("sdpa", "sdpa")
    shown = headers("sdpa", "flash")
    assert shown[shown.index("precision") + 1] == "attention"


def test_a_new_axis_splits_chart_panels_with_its_label():
    rows = pl.DataFrame({"attention": ["sdpa", "flash"], "precision": ["bf16", "bf16"]})
    assert charts.with_variant(rows, AttentionCell.axes()).get_column("variant").to_list() == ["a sdpa", "a flash"]


def test_every_axis_with_a_key_is_the_schemas_matrix_list_of_its_type_and_default(repo):
    schema = yaml.safe_load((repo / "schemas" / "config.schema.yaml").read_text())["properties"]["matrix"]
    for a in (a for a in AXES if a.key):
        entry = schema["properties"][a.key]
        assert entry["type"] == "array", a.key
        items = entry["items"]
        if a.kind is int:
            assert items.get("type") == "integer" or items.get("$ref") == "#/$defs/positive_int", a.key
        else:
            assert "enum" in items, a.key
        if a.default is not dataclasses.MISSING and "default" in entry:
            assert entry["default"] == [a.default], a.key
    assert schema["properties"]["precision"]["items"]["enum"] == list(precision.NAMES)


def test_every_mesh_axis_is_swept_by_a_mesh_kind_and_back():
    mesh_axes = {a.field for a in AXES if a.mesh}
    assert {kind.sweeps for kind in MESH_KINDS.values() if kind.sweeps} == mesh_axes
    assert all(row.mesh in MESH_KINDS.values() for row in STRATEGIES.values())


def test_every_precision_names_real_strategies_and_each_strategy_runs_fp32_and_bf16():
    for p in precision.PRECISIONS.values():
        assert set(p.strategies) <= set(STRATEGIES) and set(p.not_on_cpu) <= set(p.strategies), p.name
    assert all({"fp32", "bf16"} <= set(precision.precisions_run_by(name)) for name in STRATEGIES)


@pytest.mark.parametrize(
    "record, message",
    [
        ({**cell().to_dict(), "gpus": "2"}, r"cell\.gpus: '2' is not of type int"),
        ({**cell().to_dict(), "attention": "flash"}, r"unknown fields \['attention'\]"),
        ({k: v for k, v in cell().to_dict().items() if k != "seq_len"}, r"missing fields \['seq_len'\]"),
        ({**cell().to_dict(), "strategy": "zero4"}, r"cell\.strategy: unknown strategy 'zero4'"),
    ],
)
def test_a_cell_record_is_parsed_and_checked_in_one_place(record, message):
    with pytest.raises(ConfigError, match=message):
        Cell.from_dict(record)


def test_the_strategies_pages_precision_table_says_what_the_precision_table_holds(repo):
    page = (repo / "docs" / "strategies.md").read_text().split("### Precisions", 1)[1].split("\n\n**", 1)[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| .*? \| (.*?) \| .*? \|$", page, re.M)}
    assert set(rows) == set(precision.NAMES) - {"fp32"}
    for name, text in rows.items():
        runs = set(precision.precision_of(name).strategies)
        named = set(re.findall(r"\b(\w+)\b", text)) & set(STRATEGIES)
        if text == "all":
            assert runs == set(STRATEGIES), name
        elif text.startswith("all but"):
            assert named == set(STRATEGIES) - runs, name
        else:
            assert named == runs, name


def test_a_job_spec_is_parsed_in_one_place_with_every_key_job_spec_writes(test_config):
    from ftbench.cell import SPEC_KEYS, parse_job_spec
    from ftbench.plan.matrix import job_spec, plan

    planned = plan(test_config).cells[0]
    spec = job_spec(test_config, planned)
    assert tuple(spec) == SPEC_KEYS
    assert parse_job_spec(json.dumps(spec)) == (spec, planned)
    with pytest.raises(ConfigError, match="--spec: missing optimizer, generation"):
        parse_job_spec(json.dumps({k: v for k, v in spec.items() if k not in ("optimizer", "generation")}))


@pytest.mark.parametrize(
    "hardware",
    [
        {"device": "cpu"},
        {"device": "cuda", "gpu_memory_gb": 80},
        {"device": "auto", "gpu_gres": "gpu:h100", "gpu_memory_gb": 80},  # auto with GPUs asked: cuda
    ],
)
def test_the_estimates_config_holds_all_the_estimate_and_summary_read(test_config, hardware):
    from ftbench.plan import estimate
    from ftbench.plan.matrix import plan

    test_config["hardware"].update(hardware)
    test_config["limits"]["cpu_memory_per_rank_gb"] = 2.0
    test_config["cost"]["price_per_gpu_hour"] = {"h100": 3.0, "cpu": 0.1}
    cells = plan(test_config).every_cell
    read = estimate.config_read(test_config)
    assert estimate.summary_inputs(read, cells) == estimate.summary_inputs(test_config, cells)
    with_capacity = estimate.config_read(test_config, capacity=True)
    assert estimate.device_capacity_gb(with_capacity) == estimate.device_capacity_gb(test_config) is not None


def test_an_unknown_precision_or_a_malformed_spec_is_refused_naming_it():
    from ftbench.cell import parse_job_spec

    with pytest.raises(ConfigError, match=r"matrix.precision: 'fp4' \(mixed\) is not one of fp32, bf16, fp16, fp8"):
        precision.precision_of("fp4")
    with pytest.raises(ConfigError, match="--spec: not JSON"):
        parse_job_spec("{")
    with pytest.raises(ConfigError, match="--spec: missing run_name"):
        parse_job_spec("[]")


def test_calibration_refuses_a_precision_it_cannot_time(tmp_path):
    from ftbench.train import calibrate

    with pytest.raises(ValueError, match="calibration times no fp8"):
        calibrate.calibrate("cpu", 1, tmp_path / "calibration.json", precisions=("fp32", "fp8"))
    assert not (tmp_path / "calibration.json").exists()
