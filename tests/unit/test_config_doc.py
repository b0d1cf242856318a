"""docs/configuration.md's key table is the schema's, as it is now."""

import yaml

from ftbench.plan import config_doc


def test_the_configuration_page_lists_every_schema_key_as_the_schema_says(repo):
    page = (repo / "docs" / "configuration.md").read_text()
    table = page.split(config_doc.BEGIN + "\n", 1)[1].split(config_doc.END, 1)[0]
    schema = yaml.safe_load((repo / "schemas" / "config.schema.yaml").read_text())
    assert table == config_doc.render(schema), "run: python -m ftbench.plan.config_doc"
    for key in ("`run_name`", "`models[].tokenizer`", "`matrix.activation_checkpointing`", "`compare.gate`"):
        assert f"| {key} |" in table


def test_rewrite_puts_the_table_between_the_markers_and_keeps_the_rest(tmp_path, repo):
    page = tmp_path / "configuration.md"
    page.write_text(f"# c\n\nbefore\n\n{config_doc.BEGIN}\nold\n{config_doc.END}\n\nafter\n")
    assert config_doc.rewrite(page, repo / "schemas" / "config.schema.yaml") is True
    text = page.read_text()
    assert text.startswith("# c\n\nbefore\n\n") and text.endswith(f"{config_doc.END}\n\nafter\n")
    assert "| `seed` | integer ≥ 0 | `0` |" in text
    assert config_doc.rewrite(page, repo / "schemas" / "config.schema.yaml") is False
