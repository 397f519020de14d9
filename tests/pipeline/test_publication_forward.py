"""Publication only moves forward: backfills and zombie writers record their versions but do not
take serving back unless promoted (``recsys.publishing.tables``, ``recsys publish``).

On SQLite a whole publication is one write transaction, so writers never interleave there: a late
writer is one that starts and finishes after the newer one. On PostgreSQL a child process reserves
its version, pauses while a newer writer publishes, and finishes last (the zombie of a killed worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import get_settings
from recsys.publishing.tables import (
    UnknownVersionError,
    current_version,
    list_versions,
    promote_version,
    publish_frame,
)
from tests.pipeline.publishing_child import AS_OF, columns, recommendations
from tests.pipeline.test_publication import NAME, same_rows, versions_on_disk, view
from tests.pipeline.test_publication_crash import publishing_process, resume, wait_for_line

OLDER = AS_OF - timedelta(days=14)
NEWER = AS_OF + timedelta(days=1)


def states(engine: Engine) -> dict[int, str]:
    return {record.version: record.state for record in list_versions(engine, NAME)}


def test_an_older_version_is_recorded_but_not_served(db_engine: Engine) -> None:
    served = recommendations(30, seed=1)
    publish_frame(db_engine, NAME, served, columns(), as_of=AS_OF)
    backfill = publish_frame(db_engine, NAME, recommendations(20, seed=2), columns(), as_of=OLDER)
    assert (backfill.version, backfill.served, backfill.as_of) == (2, False, OLDER)
    pointer = current_version(db_engine, NAME)
    assert (pointer.version, pointer.as_of) == (1, AS_OF)
    same_rows(view(db_engine), served)
    assert states(db_engine) == {1: "served", 2: "published"}
    assert versions_on_disk(db_engine) == ["recs__v1", "recs__v2"]

    newer = publish_frame(db_engine, NAME, recommendations(10, seed=3), columns(), as_of=NEWER)
    assert (newer.version, newer.served) == (3, True)
    assert current_version(db_engine, NAME).version == 3
    assert states(db_engine) == {1: "published", 2: "published", 3: "served"}


def test_with_the_same_as_of_the_later_publication_wins(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(10, seed=1), columns(), as_of=AS_OF)
    rerun = recommendations(20, seed=2)
    published = publish_frame(db_engine, NAME, rerun, columns(), as_of=AS_OF)
    assert (published.version, published.served) == (2, True)
    same_rows(view(db_engine), rerun)
    assert states(db_engine) == {1: "published", 2: "served"}


def test_a_child_writer_of_older_data_finishing_last_does_not_take_over(db_engine: Engine) -> None:
    served = recommendations(40, seed=1)
    publish_frame(db_engine, NAME, served, columns(), as_of=AS_OF)
    with publishing_process(db_engine, 1000, as_of=OLDER) as proc:
        wait_for_line(proc, f"writing {NAME}__v2")
        wait_for_line(proc, "published 2 not served")
        assert proc.wait(timeout=60) == 0
    assert current_version(db_engine, NAME).version == 1
    same_rows(view(db_engine), served)
    assert states(db_engine) == {1: "served", 2: "published"}


@pytest.mark.postgres
@pytest.mark.parametrize("late_as_of", [AS_OF, OLDER], ids=["same_as_of", "older_as_of"])
def test_a_zombie_that_started_first_and_finishes_last_does_not_take_over(
    postgres_engine: Engine, late_as_of: object
) -> None:
    publish_frame(postgres_engine, NAME, recommendations(10), columns(), as_of=OLDER - timedelta(days=1))
    with publishing_process(postgres_engine, 1000, as_of=late_as_of, pause=True) as zombie:  # type: ignore[arg-type]
        # The zombie has its version number (2) and stops before writing its rows.
        wait_for_line(zombie, f"writing {NAME}__v2")
        retry = recommendations(30, seed=5)
        published = publish_frame(postgres_engine, NAME, retry, columns(), as_of=AS_OF)
        assert (published.version, published.served) == (3, True)
        resume(zombie)
        wait_for_line(zombie, "published 2 not served")
    pointer = current_version(postgres_engine, NAME)
    assert (pointer.version, pointer.as_of) == (3, AS_OF)
    same_rows(view(postgres_engine), retry)
    assert states(postgres_engine) == {1: "published", 2: "published", 3: "served"}
    served = [record for record in list_versions(postgres_engine, NAME) if record.served]
    assert len(served) == 1


def test_promote_serves_an_older_version_until_a_newer_one_comes(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(30, seed=1), columns(), as_of=AS_OF)
    backfill = recommendations(20, seed=2)
    publish_frame(db_engine, NAME, backfill, columns(), as_of=OLDER)
    promoted = promote_version(db_engine, NAME, 2)
    assert (promoted.version, promoted.as_of, promoted.rows, promoted.served) == (2, OLDER, 20, True)
    assert current_version(db_engine, NAME).version == 2
    same_rows(view(db_engine), backfill)
    assert states(db_engine) == {1: "published", 2: "served"}
    # Moving forward is judged against the served version: a day after the backfill is enough.
    after = publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=OLDER + timedelta(days=1))
    assert (after.version, after.served) == (3, True)


def test_publish_frame_can_promote_an_older_version_at_once(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(30, seed=1), columns(), as_of=AS_OF)
    backfill = recommendations(20, seed=2)
    published = publish_frame(db_engine, NAME, backfill, columns(), as_of=OLDER, promote=True)
    assert (published.version, published.served) == (2, True)
    same_rows(view(db_engine), backfill)


def test_promote_refuses_versions_that_cannot_be_served(db_engine: Engine) -> None:
    with pytest.raises(UnknownVersionError, match=r"version 1 of table 'recs' was never published; .*: none"):
        promote_version(db_engine, NAME, 1)
    for day in range(3):
        publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=AS_OF + timedelta(days=day))
    publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=AS_OF, keep_versions=1)
    # Retention dropped 1 and 2 (below the served 3); 4 is older than 3 and kept for promotion.
    assert states(db_engine) == {1: "dropped", 2: "dropped", 3: "served", 4: "published"}
    with pytest.raises(
        UnknownVersionError, match=r"version 7 of table 'recs' was never published; .*: 3, 4$"
    ):
        promote_version(db_engine, NAME, 7)
    with pytest.raises(UnknownVersionError, match="version 1 of table 'recs' is dropped"):
        promote_version(db_engine, NAME, 1)
    assert current_version(db_engine, NAME).version == 3


def test_retention_keeps_the_served_version_and_every_version_above_it(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=AS_OF, keep_versions=1)
    for days in (3, 2, 1):
        publish_frame(
            db_engine,
            NAME,
            recommendations(10),
            columns(),
            as_of=AS_OF - timedelta(days=days),
            keep_versions=1,
        )
    assert versions_on_disk(db_engine) == ["recs__v1", "recs__v2", "recs__v3", "recs__v4"]
    assert current_version(db_engine, NAME).version == 1
    publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=NEWER, keep_versions=2)
    assert versions_on_disk(db_engine) == ["recs__v4", "recs__v5"]
    assert states(db_engine) == {1: "dropped", 2: "dropped", 3: "dropped", 4: "published", 5: "served"}


def test_tables_published_before_versions_were_recorded_are_adopted(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=AS_OF)
    # A database from before the versions table: only the pointer and the physical table.
    with db_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE published_table_versions")
    published = publish_frame(db_engine, NAME, recommendations(10), columns(), as_of=OLDER)
    assert (published.version, published.served) == (2, False)
    assert states(db_engine) == {1: "served", 2: "published"}


# -- the CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli_database(db_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    """The CLI pointed at the test database."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("RECSYS_DATABASE_URL", db_engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield db_engine
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_cli_lists_versions_and_promotes(cli_database: Engine) -> None:
    publish_frame(cli_database, NAME, recommendations(30, seed=1), columns(), as_of=AS_OF)
    publish_frame(cli_database, NAME, recommendations(20, seed=2), columns(), as_of=OLDER)
    listing = invoke("publish", "versions", NAME)
    assert listing.exit_code == 0, listing.output
    lines = {line.split()[1]: line for line in listing.output.splitlines() if line[2:3].isdigit()}
    assert "served" in lines["1"] and str(AS_OF.date()) in lines["1"]
    assert "published" in lines["2"] and str(OLDER.date()) in lines["2"]

    promoted = invoke("publish", "promote", NAME, "2")
    assert promoted.exit_code == 0, promoted.output
    assert f"{NAME}: version 2" in promoted.output and "is served" in promoted.output
    assert current_version(cli_database, NAME).version == 2


def test_cli_promote_of_an_unknown_version_fails_clearly(cli_database: Engine) -> None:
    publish_frame(cli_database, NAME, recommendations(30, seed=1), columns(), as_of=AS_OF)
    result = invoke("publish", "promote", NAME, "9")
    assert result.exit_code == 1
    assert "version 9 of table 'recs' was never published" in " ".join(result.output.split())
    assert current_version(cli_database, NAME).version == 1
    missing = invoke("publish", "versions", "nothing_here")
    assert missing.exit_code == 1
    assert "has no recorded versions" in missing.output
