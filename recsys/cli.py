"""The ``recsys`` command line: data generation, loading and preparation, and the demo.

Every command reads the project settings (environment / ``.env``) and prints what it did; the
core's progress lines (stage start and finish, training iterations) are shown as they are logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from recsys.config import Settings, get_settings
from recsys.data.errors import RawDataError

app = typer.Typer(help="RetailRocket recommender system.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Raw data: generate the synthetic twin, load, prepare.", no_args_is_help=True)
app.add_typer(data_app, name="data")
pipeline_app = typer.Typer(help="The seven pipeline stages, without Airflow.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
publish_app = typer.Typer(
    help="Published tables: their versions and which one is served.", no_args_is_help=True
)
app.add_typer(publish_app, name="publish")
console = Console(stderr=True)


@app.callback()
def _show_progress() -> None:
    """Show the core's INFO log lines (progress of long work) on the console, once per process."""
    package = logging.getLogger("recsys")
    package.setLevel(logging.INFO)
    if not any(isinstance(handler, RichHandler) for handler in package.handlers):
        package.addHandler(RichHandler(console=console, show_path=False, markup=False))


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


@data_app.command("generate")
def generate(
    scale: Annotated[
        str | None, typer.Option(help="Size of the twin: tiny, small or full [default: small].")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder [default: the raw data folder].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 42,
    shape: Annotated[
        str,
        typer.Option(
            help="Shop shape: twin (RetailRocket's), dense (small catalogue, loyal visitors) "
            "or sparse (large long-tail catalogue); dense and sparse have one size."
        ),
    ] = "twin",
    scale_factor: Annotated[
        float, typer.Option(help="Grow or shrink the chosen size, e.g. 0.5 or 2 (the tree keeps its size).")
    ] = 1.0,
) -> None:
    """Write a synthetic shop in the RetailRocket format: the twin, or another shape."""
    from recsys.data.synthetic import generate_twin, resolve_shape

    try:
        spec = resolve_shape(shape, scale, scale_factor)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    target = out or get_settings().raw_dir
    console.print(f"Generating the [bold]{spec.name}[/] synthetic shop (seed {seed}) into {target}")
    summary = generate_twin(target, scale=spec, seed=seed, progress=lambda msg: console.print(f"  {msg}"))
    console.print(f"Done: {summary}")


@data_app.command("load")
def load(
    raw_dir: Annotated[Path | None, typer.Option(help="Folder with the Kaggle files.")] = None,
) -> None:
    """Load the raw files into the tables category_tree, item_properties and events."""
    settings = get_settings()
    run_load(settings, raw_dir or settings.raw_dir)


@data_app.command("prepare")
def prepare(
    as_of: Annotated[
        datetime | None, typer.Option(help="Use only events and snapshots before this UTC time.")
    ] = None,
) -> None:
    """Build the prepared tables items and interactions from the raw tables."""
    run_prepare(get_settings(), as_of)


@pipeline_app.command("run")
def pipeline_run(
    stages: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Stage to run (repeatable); default: all seven.")
    ] = None,
    moment: Annotated[
        datetime | None,
        typer.Option(help="The run's moment (UTC), like a DAG's data interval end [default: now]."),
    ] = None,
    promote_backfill: Annotated[
        bool,
        typer.Option(
            help="Serve what this run builds even if it describes an older moment than what is served "
            "(the DAG param promote_backfill); by default such a run only records its versions."
        ),
    ] = False,
) -> None:
    """Run pipeline stages in order with the same functions the Airflow DAGs call."""
    run_pipeline(get_settings(), stages, moment, promote_backfill)


@pipeline_app.command("list")
def pipeline_list() -> None:
    """List the stages in run order."""
    from recsys.pipeline.stages import STAGES

    for number, name in enumerate(STAGES, start=1):
        typer.echo(f"{number}. {name}")


def run_pipeline(
    settings: Settings, stages: list[str] | None, moment: datetime | None, promote_backfill: bool = False
) -> None:
    """Run the chosen stages (all by default): a line per stage, then the stage's own progress lines."""
    from recsys.pipeline.stages import STAGES, RunContext

    chosen = stages or list(STAGES)
    unknown = [name for name in chosen if name not in STAGES]
    if unknown:
        raise _fail(f"unknown stage(s) {unknown}; stages are: {', '.join(STAGES)}")
    context = RunContext(
        settings, moment or datetime.now(UTC).replace(tzinfo=None), promote_backfill=promote_backfill
    )
    for number, name in enumerate(chosen, start=1):
        console.print(f"[bold][{number}/{len(chosen)}][/] {name}…")
        context.summary = {}
        try:
            STAGES[name](context)  # logs its time and summary
        except (ValueError, LookupError, RuntimeError) as exc:
            raise _fail(f"stage {name} failed: {exc}") from exc


@publish_app.command("versions")
def publish_versions(
    name: Annotated[str, typer.Argument(help="Logical table, e.g. default_recommendations.")],
) -> None:
    """List the recorded versions of a published table and which one is served."""
    from recsys.publishing.tables import list_versions
    from recsys.storage.database import create_db_engine

    engine = create_db_engine(get_settings().db_url)
    try:
        records = list_versions(engine, name)
    finally:
        engine.dispose()
    if not records:
        raise _fail(f"table {name!r} has no recorded versions")
    table = Table("version", "as of", "rows", "published at", "state")
    for record in records:
        table.add_row(
            str(record.version),
            str(record.as_of or "-"),
            "-" if record.rows is None else str(record.rows),
            str(record.published_at or "-"),
            record.state,
        )
    Console().print(table)


@publish_app.command("promote")
def publish_promote(
    name: Annotated[str, typer.Argument(help="Logical table, e.g. default_recommendations.")],
    version: Annotated[int, typer.Argument(help="A published version (recsys publish versions NAME).")],
) -> None:
    """Serve a published version of a table now, even if it describes an older moment (a backfill)."""
    from recsys.publishing.tables import UnknownVersionError, promote_version
    from recsys.storage.database import create_db_engine

    engine = create_db_engine(get_settings().db_url)
    try:
        promoted = promote_version(engine, name, version)
    except (UnknownVersionError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    console.print(
        f"{name}: version {promoted.version} (as of {promoted.as_of}, {promoted.rows} rows) is served"
    )


@app.command()
def demo(
    scale: Annotated[
        str, typer.Option(help="Scale of the synthetic twin when no raw files exist.")
    ] = "small",
) -> None:
    """Run everything on the embedded default: raw files (real or synthetic), load, the seven stages."""
    settings = get_settings()
    console.print(f"Database: {settings.db_url}\nObject store: {settings.store_url}")
    from recsys.data.schema import RAW_TABLES
    from recsys.data.sources import candidate_paths

    raw_dir = settings.raw_dir
    names = [name for table in RAW_TABLES for name in table.files]
    if all(any(p.is_file() for p in candidate_paths(raw_dir, name)) for name in names):
        console.print(f"Using the raw files found in {raw_dir}")
    else:
        generate(scale=scale, out=raw_dir, seed=42)
    run_load(settings, raw_dir)
    run_pipeline(settings, None, None)
    print_service_examples(settings)


def print_service_examples(settings: Settings) -> None:
    """Example requests against the service, with a user and an item that have recommendations."""
    import sqlalchemy as sa

    from recsys.publishing.catalogue import RANKED_RECOMMENDATIONS, SIMILAR_ITEMS
    from recsys.publishing.tables import current_version
    from recsys.storage.database import create_db_engine

    engine = create_db_engine(settings.db_url)
    with engine.connect() as conn:
        ranked = current_version(conn, RANKED_RECOMMENDATIONS.name).physical_name
        similar = current_version(conn, SIMILAR_ITEMS.name).physical_name
        user = conn.execute(sa.text(f'SELECT user_id FROM "{ranked}" ORDER BY user_id LIMIT 1')).scalar()
        item = conn.execute(sa.text(f'SELECT item_id FROM "{similar}" ORDER BY item_id LIMIT 1')).scalar()
    base = f"http://127.0.0.1:{settings.service_port}"
    console.print(
        "\n[bold]Service examples[/] (start it with `make serve`, or as `make demo` does):\n"
        f"  curl '{base}/recommendations/default?k=5'\n"
        f"  curl '{base}/recommendations/users/{user}?k=5'\n"
        f"  curl '{base}/recommendations/users/999999999?k=5'   # unknown user: popular items\n"
        f"  curl '{base}/items/{item}/similar?k=5'\n"
        f"  curl -X POST '{base}/events' -H 'X-API-Key: <RECSYS_API_KEY>' "
        "-H 'Content-Type: application/json' "
        f'-d \'{{"user_id": {user}, "item_id": {item}, "event": "view"}}\'\n'
        f"  curl '{base}/health'    # docs: {base}/docs\n"
        f"[bold]Storefront[/] (the recommendations as a shopper sees them): {base}/shop",
        highlight=False,
        soft_wrap=True,
    )


def run_load(settings: Settings, raw_dir: Path) -> None:
    """Load raw files with a progress bar and print a summary table."""
    from recsys.data.loader import load_raw_data
    from recsys.storage.database import create_db_engine

    engine = create_db_engine(settings.db_url)
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:

        def on_progress(table: str, file: str, rows: int, done: int, total: int | None) -> None:
            if file not in tasks:
                tasks[file] = bar.add_task(f"{table} ← {file}", total=total, rows=0)
            bar.update(tasks[file], completed=done, rows=rows)

        try:
            reports = load_raw_data(engine, raw_dir, progress=on_progress)
        except RawDataError as exc:
            raise _fail(f"{exc}\nNothing was loaded; the database is unchanged.") from exc
    summary = Table(title="Raw tables loaded")
    for column in ("table", "rows", "duplicates dropped", "seconds"):
        summary.add_column(column, justify="right" if column != "table" else "left")
    for report in reports:
        summary.add_row(
            report.table, f"{report.rows_loaded:,}", f"{report.duplicates_dropped:,}", f"{report.seconds:.1f}"
        )
    console.print(summary)
    for report in reports:
        for example in report.duplicate_examples:
            console.print(f"  duplicate in {report.table}: {example}")


def run_prepare(settings: Settings, as_of: datetime | None) -> None:
    """Prepare items and interactions and print a summary."""
    from recsys.data.prepare import prepare_datasets
    from recsys.storage.database import create_db_engine

    engine = create_db_engine(settings.db_url)
    console.print("Preparing items and interactions…")
    try:
        # A direct command is an explicit request: it rebuilds even over tables of a later moment.
        report = prepare_datasets(
            engine, settings.event_weights, settings.session_gap_minutes, as_of, allow_older=True
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"Prepared as of {report.as_of:%Y-%m-%d %H:%M:%S} UTC in {report.seconds:.1f} s: "
        f"{report.n_items:,} items ({report.items_without_category:,} without category, "
        f"{report.categories_missing_from_tree} categories missing from the tree), "
        f"{report.n_interactions:,} interactions of {report.n_users:,} users."
    )


if __name__ == "__main__":
    app()
