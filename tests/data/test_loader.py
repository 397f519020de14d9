"""Loading raw files into SQLite and PostgreSQL: content, duplicates, compression, bad input."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.errors import RawDataError
from recsys.data.loader import load_raw_data
from recsys.data.schema import EVENTS
from tests.data import raw_files
from tests.data.raw_files import write_raw_files


def table_rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """Every row of a table, sorted, for exact comparisons."""
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """The content of the three raw tables."""
    return {name: table_rows(engine, name) for name in ("category_tree", "item_properties", "events")}


def test_load_gives_typed_tables_with_exact_content(db_engine: Engine, tmp_path: Path) -> None:
    reports = load_raw_data(db_engine, write_raw_files(tmp_path))

    assert [r.table for r in reports] == ["category_tree", "item_properties", "events"]
    assert table_rows(db_engine, "category_tree") == sorted(
        [(1016, 213), (809, 169), (570, 9), (1691, 885), (536, 1691), (231, None), (542, 378)]
    )
    properties = table_rows(db_engine, "item_properties")
    assert len(properties) == 6
    assert (1441508400000, 206783, "888", "1116713 960601 n277.200") in properties
    assert (1439089200000, 59481, "790", "n15360.000") in properties
    events = table_rows(db_engine, "events")
    assert (1433223291897, 972639, "transaction", 22556, 4000) in events
    assert (1433221337106, 951259, "addtocart", 367447, None) in events


def test_exact_duplicates_are_dropped_and_reported(db_engine: Engine, tmp_path: Path) -> None:
    line = "1433224214164,992329,view,248676,"
    events = [*raw_files.EVENTS, line, line]  # the base file already repeats its first line once
    report = load_raw_data(db_engine, write_raw_files(tmp_path, events=events))[-1]

    assert report.rows_read == 9
    assert report.duplicates_dropped == 3
    assert report.rows_loaded == 6
    assert "events.csv line 8 repeats events.csv line 2" in report.duplicate_examples
    assert "events.csv line 9 repeats events.csv line 3" in report.duplicate_examples
    rows = table_rows(db_engine, "events")
    assert len(rows) == 6 == len(set(rows))


def test_rows_equal_but_for_one_field_are_kept(db_engine: Engine, tmp_path: Path) -> None:
    # Same timestamp, item and property, different value: not a duplicate.
    part1 = ["1435460400000,460429,888,a", "1435460400000,460429,888,b"]
    report = load_raw_data(db_engine, write_raw_files(tmp_path, part1=part1))[1]
    assert report.duplicates_dropped == 0
    assert report.rows_loaded == 5


def test_small_blocks_give_the_same_result_and_line_numbers(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    load_raw_data(db_engine, folder)
    whole = snapshot(db_engine)
    reports = load_raw_data(db_engine, folder, block_size=40)
    assert snapshot(db_engine) == whole
    assert reports[-1].duplicate_examples == ["events.csv line 8 repeats events.csv line 2"]


def test_reload_is_idempotent(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    load_raw_data(db_engine, folder)
    first = snapshot(db_engine)
    load_raw_data(db_engine, folder)
    assert snapshot(db_engine) == first


@pytest.mark.parametrize("variant", ["gz", "csv.zip", "zip"])
def test_compressed_files_load_like_plain_ones(db_engine: Engine, tmp_path: Path, variant: str) -> None:
    plain = write_raw_files(tmp_path / "plain")
    load_raw_data(db_engine, plain)
    expected = snapshot(db_engine)

    packed = tmp_path / "packed"
    shutil.copytree(plain, packed)
    for csv_path in packed.glob("*.csv"):
        if variant == "gz":
            target = csv_path.with_name(csv_path.name + ".gz")
            target.write_bytes(gzip.compress(csv_path.read_bytes()))
        else:
            name = csv_path.name + ".zip" if variant == "csv.zip" else csv_path.stem + ".zip"
            with zipfile.ZipFile(csv_path.with_name(name), "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(csv_path, arcname=csv_path.name)
        csv_path.unlink()
    load_raw_data(db_engine, packed)
    assert snapshot(db_engine) == expected


def test_windows_line_endings_and_bom_are_accepted(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    path = folder / "events.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    report = load_raw_data(db_engine, folder)[-1]
    assert report.rows_loaded == 6
    assert (1433223291897, 972639, "transaction", 22556, 4000) in table_rows(db_engine, "events")


def test_only_selected_tables_are_loaded(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    (folder / "category_tree.csv").unlink()  # not needed for events alone
    load_raw_data(db_engine, folder, tables=[EVENTS])
    assert len(table_rows(db_engine, "events")) == 6
    assert not sa.inspect(db_engine).has_table("category_tree")


def _replace(lines: list[str], old: str, new: str) -> list[str]:
    return [line.replace(old, new) for line in lines]


EV = raw_files.EVENTS_HEADER

# Each malformed input: file name, content, then what the error must name.
MALFORMED = {
    "missing column": (
        "events.csv",
        f"timestamp,visitorid,event,itemid\n{raw_files.EVENTS[1][:-1]}\n",
        1,
        None,
        "missing column(s) 'transactionid'",
    ),
    "extra column": (
        "events.csv",
        f"{EV},comment\n{raw_files.EVENTS[1]},x\n",
        1,
        None,
        "unexpected column(s) 'comment'",
    ),
    "renamed column": (
        "events.csv",
        EV.replace("visitorid", "visitor_id") + "\n",
        1,
        None,
        "missing column(s) 'visitorid'; unexpected column(s) 'visitor_id'",
    ),
    "duplicate header": (
        "events.csv",
        "timestamp,visitorid,event,event,transactionid\n",
        1,
        None,
        "duplicate column(s) 'event'",
    ),
    "wrong column order": (
        "events.csv",
        "visitorid,timestamp,event,itemid,transactionid\n",
        1,
        None,
        "columns in the wrong order",
    ),
    "non-numeric id": (
        "events.csv",
        "\n".join([EV, raw_files.EVENTS[0], "1433224214164,abc,view,248676,"]),
        3,
        "visitorid",
        "'abc' is not a non-negative integer",
    ),
    "non-numeric timestamp": (
        "events.csv",
        "\n".join([EV, "2015-06-02,257597,view,355908,"]),
        2,
        "timestamp",
        "'2015-06-02' is not a non-negative integer",
    ),
    "timestamp in seconds": (
        "events.csv",
        "\n".join([EV, raw_files.EVENTS[0], "1433224214,9,view,1,"]),
        3,
        "timestamp",
        "1433224214 looks like seconds (2015-06-02 05:50 UTC), expected milliseconds",
    ),
    "timestamp in seconds from 1997": (
        "events.csv",
        "\n".join([EV, "874206000,9,view,1,"]),
        2,
        "timestamp",
        "874206000 looks like seconds (1997-09-14 03:00 UTC), expected milliseconds",
    ),
    "timestamp in microseconds": (
        "item_properties_part1.csv",
        f"{raw_files.PROPERTIES_HEADER}\n1435460400000000,460429,categoryid,1338\n",
        2,
        "timestamp",
        "looks like microseconds (2015-06-28 03:00 UTC), expected milliseconds",
    ),
    "timestamp before 1990": (
        "events.csv",
        "\n".join([EV, raw_files.EVENTS[0], "500000000000,9,view,1,"]),
        3,
        "timestamp",
        "500000000000 is not a plausible Unix time in milliseconds (expected 1990-01-01 to ",
    ),
    "garbage timestamp": (
        "events.csv",
        "\n".join([EV, "42,9,view,1,"]),
        2,
        "timestamp",
        "42 is not a plausible Unix time in milliseconds",
    ),
    "unknown event type": (
        "events.csv",
        "\n".join([EV, *raw_files.EVENTS[:3], "1433224214164,9,click,1,"]),
        5,
        "event",
        "unknown value 'click'",
    ),
    "transaction without id": (
        "events.csv",
        "\n".join([EV, "1433223291897,972639,transaction,22556,"]),
        2,
        "transactionid",
        "a transaction without transactionid",
    ),
    "transaction id on a view": (
        "events.csv",
        "\n".join([EV, "1433223291897,972639,view,22556,17"]),
        2,
        "transactionid",
        "transactionid set on a 'view' event",
    ),
    "empty file": ("events.csv", "", 1, None, "file is empty"),
    "header only": ("events.csv", EV + "\n", None, None, "no data rows after the header"),
    "truncated last line": (
        "events.csv",
        "\n".join([EV, *raw_files.EVENTS[:4], "1433221337106,951259,add"]),
        6,
        None,
        "3 field(s) instead of 5",
    ),
    "empty line": (
        "events.csv",
        "\n".join([EV, raw_files.EVENTS[0], "", raw_files.EVENTS[1]]),
        3,
        None,
        "empty line",
    ),
    "missing category id": (
        "category_tree.csv",
        "categoryid,parentid\n1016,213\n,5\n",
        3,
        "categoryid",
        "missing value",
    ),
    "category listed as a root and with a parent": (
        "category_tree.csv",
        "\n".join([raw_files.TREE_HEADER, *raw_files.TREE, "1016,", "213,1016"]) + "\n",
        9,
        "categoryid",
        "categoryid 1016 is listed with different parents: line 2 gives 213, line 9 gives none",
    ),
    "cycle in the category tree": (
        "category_tree.csv",
        "\n".join([raw_files.TREE_HEADER, "1,", "5,7", "6,1", "7,5"]) + "\n",
        3,
        "parentid",
        "categories 5 → 7 → 5 form a cycle (lines 3, 5): following parentid never reaches a root",
    ),
    "category that is its own parent": (
        "category_tree.csv",
        "\n".join([raw_files.TREE_HEADER, "1,", "2,1", "3,3"]) + "\n",
        4,
        "parentid",
        "categories 3 → 3 form a cycle (line 4)",
    ),
    "empty property name": (
        "item_properties_part2.csv",
        f"{raw_files.PROPERTIES_HEADER}\n1439089200000,59481,,n15360.000\n",
        2,
        "property",
        "missing value",
    ),
}


@pytest.mark.parametrize("block_size", [1 << 20, 32], ids=["one-block", "tiny-blocks"])
@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_input_names_file_line_field_and_leaves_database_untouched(
    db_engine: Engine, tmp_path: Path, case: str, block_size: int
) -> None:
    name, content, line, field, message = MALFORMED[case]
    load_raw_data(db_engine, write_raw_files(tmp_path / "good"))
    before = snapshot(db_engine)

    # A different, valid tree and properties beside the bad file: a partial load would show.
    bad = write_raw_files(tmp_path / "bad", tree=["1,", "2,1"], part1=["1435460400000,1,categoryid,2"])
    (bad / name).write_text(content, encoding="utf-8")
    with pytest.raises(RawDataError) as caught:
        load_raw_data(db_engine, bad, block_size=block_size)

    error = caught.value
    assert error.path.name == name
    assert error.line == line
    assert error.field == field
    assert message in str(error)
    assert name in str(error)
    assert snapshot(db_engine) == before


def test_millisecond_times_are_judged_by_date_not_digits(db_engine: Engine, tmp_path: Path) -> None:
    # 874206000000 ms is 1997-09-14: 12 digits, and a real millisecond time.
    tomorrow_ms = int((datetime.now(UTC) + timedelta(hours=12)).timestamp() * 1000)
    events = ["874206000000,1,view,5,", "631152000000,2,view,5,", f"{tomorrow_ms},3,view,5,"]
    load_raw_data(db_engine, write_raw_files(tmp_path / "ok", events=events))
    assert [row[0] for row in table_rows(db_engine, "events")] == [631152000000, 874206000000, tomorrow_ms]

    too_late_ms = int((datetime.now(UTC) + timedelta(days=2)).timestamp() * 1000)
    bad = write_raw_files(tmp_path / "late", events=[*events, f"{too_late_ms},4,view,5,"])
    with pytest.raises(RawDataError, match=r"events.csv, line 5, field 'timestamp': .* not a plausible Unix"):
        load_raw_data(db_engine, bad)


def test_exact_duplicate_tree_rows_are_dropped(db_engine: Engine, tmp_path: Path) -> None:
    report = load_raw_data(db_engine, write_raw_files(tmp_path, tree=[*raw_files.TREE, "1016,213"]))[0]
    assert (report.table, report.duplicates_dropped, report.rows_loaded) == ("category_tree", 1, 7)
    assert report.duplicate_examples == ["category_tree.csv line 9 repeats category_tree.csv line 2"]


def test_a_tree_deeper_than_any_fixed_bound_loads(db_engine: Engine, tmp_path: Path) -> None:
    chain = ["0,", *(f"{i},{i - 1}" for i in range(1, 300))]
    report = load_raw_data(db_engine, write_raw_files(tmp_path, tree=chain))[0]
    assert report.rows_loaded == 300


def test_non_utf8_bytes_name_the_line(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    path = folder / "item_properties_part1.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = b"1439089200000,395014,400,n552.000 \xff\xfe 424566"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(RawDataError, match=r"item_properties_part1.csv, line 4: bytes that are not UTF-8"):
        load_raw_data(db_engine, folder)


def test_truncated_gzip_is_reported(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path, events=raw_files.EVENTS * 200)
    data = gzip.compress((folder / "events.csv").read_bytes())
    (folder / "events.csv").unlink()
    (folder / "events.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        RawDataError, match=r"events.csv.gz: cannot be read to the end \(truncated or corrupt"
    ):
        load_raw_data(db_engine, folder)
    assert not sa.inspect(db_engine).has_table("events")


def test_missing_and_ambiguous_files(db_engine: Engine, tmp_path: Path) -> None:
    folder = write_raw_files(tmp_path)
    (folder / "category_tree.csv").unlink()
    with pytest.raises(RawDataError, match=r"category_tree.csv: file not found .*category_tree.csv.gz"):
        load_raw_data(db_engine, folder)

    folder = write_raw_files(tmp_path / "two")
    (folder / "events.csv.gz").write_bytes(gzip.compress((folder / "events.csv").read_bytes()))
    with pytest.raises(RawDataError, match=r"several copies found \(events.csv, events.csv.gz\)"):
        load_raw_data(db_engine, folder)


def test_loaded_frame_round_trips_through_pandas(db_engine: Engine, tmp_path: Path) -> None:
    load_raw_data(db_engine, write_raw_files(tmp_path))
    with db_engine.connect() as conn:
        frame = pd.read_sql(sa.text("SELECT * FROM events"), conn)
    assert frame["transactionid"].notna().sum() == 1
    assert set(frame["event"]) == {"view", "addtocart", "transaction"}
