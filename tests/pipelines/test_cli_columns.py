"""`technic columns` prints the registry the API serves as GET /columns."""

import json

from typer.testing import CliRunner

from technic_core.catalog import column_rows
from technic_pipelines.cli import app


def test_columns_as_json_is_the_registry():
    result = CliRunner().invoke(app, ["columns", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == column_rows()


def test_a_group_filters_and_an_unknown_group_names_the_known_ones():
    table = CliRunner().invoke(app, ["columns", "--group", "oscillators"], env={"COLUMNS": "100"})
    assert table.exit_code == 0 and "stoch_k" in table.stdout and "sma_200" not in table.stdout
    unknown = CliRunner().invoke(app, ["columns", "--group", "nope"])
    assert unknown.exit_code == 2 and "oscillators" in unknown.output
