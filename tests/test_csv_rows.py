"""results.csv_rows: formats on the way out, types on the way back, and an error naming a foreign file."""

import pytest

from results.abx.report import read_csv as read_abx_csv
from results.csv_rows import read_rows, write_rows


def test_rows_round_trip_with_formats_and_types(tmp_path):
    path = tmp_path / "x.csv"
    write_rows([{"name": "a", "layer": 2, "error": 0.12345}], path, ["name", "layer", "error"], {"error": ".3f"})
    assert path.read_text() == "name,layer,error\na,2,0.123\n"
    assert read_rows(path, ["name", "layer", "error"], {"layer": int, "error": float}, "an x.csv") == [
        {"name": "a", "layer": 2, "error": 0.123}
    ]


def test_a_file_without_the_columns_is_refused_by_name(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"other\.csv: not an abx\.csv \(columns "):
        read_abx_csv(path)
    (tmp_path / "empty.csv").write_text("name,layer\n")
    with pytest.raises(ValueError, match=r"empty\.csv: not an x\.csv"):
        read_rows(tmp_path / "empty.csv", ["name", "layer"], {}, "an x.csv")
