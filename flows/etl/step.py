"""`run_table`: the unit of work of every flow run, moving one table from source to target.

    result = run_table(load_config("etlctl.toml"), "orders", batch_id="2026-11-28")

Full mode reads a snapshot of the table, replaces the target's rows with it, checks the row count
and writes its state row, all in one target transaction (writer.py says where the rows wait before
that transaction on each target; attach.py lets SQLite copy a SQLite file by itself). Incremental mode
reads rows at or after the stored watermark in cursor order and commits each chunk together with the
watermark it reached, so a crash at any point resumes without losing or duplicating a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from sqlite3 import SQLITE_FULL

from sqlalchemy import Connection, Engine, Select, Table
from sqlalchemy.exc import DataError

from flows.config import Config, TableOptions
from flows.errors import DiskFullError, RowCountMismatchError, UnsupportedError, first_line
from flows.etl import state as st
from flows.etl.attach import attachable, attached, copy_attached, count_attached
from flows.etl.checks import check_table, check_values
from flows.etl.driver import can_pipe, gc_paused, pipe_rows, rows_writer, stream_rows, write_rows
from flows.etl.engines import check_connection, make_engine
from flows.etl.fit import InFlight
from flows.etl.plan import primary_key_for, reflect_table
from flows.etl.reader import count_rows, source_query
from flows.etl.table_lock import table_lock
from flows.etl.typemap import adapt_rows, cursor_value, formattable, read_columns, value_adapters
from flows.etl.writer import (
    clear,
    count,
    create_staging,
    ensure_target,
    replaces_in_place,
    swap_in,
    target_table,
    upsert_rows,
)

ChunkHook = Callable[[int], None]


def run_table(
    config: Config,
    table: str,
    batch_id: str | None = None,
    *,
    worker: str | None = None,
    on_chunk: ChunkHook | None = None,
) -> st.TableResult:
    """Move `table`; raise on failure after recording it, so the caller's retries can act.

    `on_chunk(rows_read)` is called after every chunk, for progress reporting.
    """
    options = config.options_for(table)
    source_engine = make_engine(config.source_url, "source")
    target_engine = make_engine(config.target_url, "target")
    check_connection(source_engine, "source")
    check_connection(target_engine, "target")
    state, runs = st.state_tables(config.target_schema)
    result = st.TableResult(table, options.mode, batch_id, worker=worker)
    started = time.monotonic()

    def finish(conn: Connection, done: st.TableResult) -> None:
        done.seconds = time.monotonic() - started
        st.record(conn, state, runs, done)

    try:
        with (
            table_lock(target_engine, table, config.target_schema),
            source_engine.connect() as src,
            src.begin(),
            target_engine.connect() as tgt,
        ):
            source = reflect_table(src, table, config.source_schema)
            key = primary_key_for(source, options)
            check_table(src, source, tgt.dialect)
            incremental_key = key if options.mode == "incremental" else None
            # A PostgreSQL pair copied by COPY never turns a value into Python, and to_char
            # (typemap.formattable) writes infinity as NULL: the dates Python cannot hold are
            # looked for here rather than met while reading.
            piped = options.mode == "full" and can_pipe(src, tgt)
            dates = piped or bool(formattable(source, tgt.dialect))
            fits = _in_flight(src, tgt, source, options)
            skip = fits.columns if fits else ()
            check_values(src, source, tgt.dialect, incremental_key, dates=dates, skip=skip)
            target = target_table(
                source,
                src.dialect,
                tgt.dialect,
                key if options.mode == "incremental" else (),
                config.target_schema,
            )
            with tgt.begin():
                state.metadata.create_all(tgt)
                stored = st.read_watermark(tgt, state, table)
            if options.mode == "incremental":
                cursor_type = source.c[options.cursor].type.python_type
                result.watermark_before = st.decode_watermark(stored, cursor_type)
                load = _Incremental(src, tgt, source, target, options, on_chunk)
                result = load.run(result, key, state, finish)
            else:
                load = _Full(src, tgt, source, target, options, on_chunk, fits)
                # not around incremental loads: their per-chunk statements leave cyclic garbage
                with gc_paused():
                    if attachable(src, tgt, source, config.source_schema):
                        result = load.run_attached(result, finish)
                    else:
                        result = load.run(result, finish)
    except Exception as exc:
        result.outcome = "failed"
        named = _named(exc, table)
        result.error = _failure_text(named)
        result.seconds = time.monotonic() - started
        _record_failure(target_engine, state, runs, result)
        if named is exc:
            raise
        raise named from exc
    finally:
        source_engine.dispose()
        target_engine.dispose()
    return result


Finish = Callable[[Connection, st.TableResult], None]


@dataclass
class _Load:
    src: Connection
    tgt: Connection
    source: Table
    target: Table
    options: TableOptions
    on_chunk: ChunkHook | None
    fits: InFlight | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.source.columns]

    def chunks(self, query: Select) -> Iterator[tuple[Sequence[tuple], Sequence[tuple]]]:
        """The query's rows in chunks, as read and with each value adapted to keep its meaning
        in the target."""
        adapters = value_adapters(self.source, self.tgt.dialect, self.formatted)
        try:
            for chunk in stream_rows(self.src, query, self.options.chunk_size):
                yield chunk, adapt_rows(chunk, adapters)
        except DataError as exc:  # e.g. a PostgreSQL date of 'infinity', which Python cannot hold
            raise UnsupportedError(
                f"table {self.source.name!r}: a source value cannot be read ({first_line(exc.orig or exc)}); "
                "`etlctl config check` names the column"
            ) from exc

    def query(self, cursor: str | None = None, since: object = None) -> Select:
        columns = read_columns(self.source, self.tgt.dialect, self.formatted)
        return source_query(self.source, cursor, since, columns)

    @property
    def formatted(self) -> list[str]:
        """The columns the source turns into the target's text itself; never the cursor, whose
        value as read becomes the watermark."""
        return [n for n in formattable(self.source, self.tgt.dialect) if n != self.options.cursor]

    def progress(self, rows_read: int) -> None:
        if self.on_chunk:
            self.on_chunk(rows_read)


class _Full(_Load):
    def run(self, result: st.TableResult, finish: Finish) -> st.TableResult:
        query = self.query()
        expected = count_rows(self.src, query)
        if replaces_in_place(self.tgt):
            return self.run_in_place(query, expected, result, finish)
        return self.run_staged(query, expected, result, finish)

    def run_in_place(
        self, query: Select, expected: int, result: st.TableResult, finish: Finish
    ) -> st.TableResult:
        """PostgreSQL: the old rows out and the new rows in, in one transaction on the target."""
        with self.tgt.begin():
            ensure_target(self.tgt, self.target)
            clear(self.tgt, self.target)
            if can_pipe(self.src, self.tgt):
                every = self.options.chunk_size
                result.rows_read = pipe_rows(
                    self.src, query, self.tgt, self.target, self.names, self.progress, every
                )
            else:
                self.copy(query, self.target, result)
            self.check(result, expected, count(self.tgt, self.target), finish)
        return result

    def run_staged(
        self, query: Select, expected: int, result: st.TableResult, finish: Finish
    ) -> st.TableResult:
        """SQLite: chunks committed into a private staging table, then one short swap."""
        with self.tgt.begin():
            staging = create_staging(self.tgt, self.target)
        self.copy(query, staging, result, commit_each=True)
        with self.tgt.begin():
            ensure_target(self.tgt, self.target)
            self.check(result, expected, swap_in(self.tgt, staging, self.target), finish)
        return result

    def run_attached(self, result: st.TableResult, finish: Finish) -> st.TableResult:
        """SQLite copies the attached source file itself, in the one load transaction."""
        with attached(self.tgt, self.src), self.tgt.begin():
            ensure_target(self.tgt, self.target)
            expected = count_attached(self.tgt, self.source)
            clear(self.tgt, self.target)
            for copied in copy_attached(self.tgt, self.source, self.target, self.options.chunk_size):
                result.rows_read += copied
                self.progress(result.rows_read)
            self.check(result, expected, count(self.tgt, self.target), finish)
        return result

    def copy(self, query: Select, into: Table, result: st.TableResult, commit_each: bool = False) -> None:
        """Every row of `query` into `into`; `commit_each` commits every chunk on its own."""
        if commit_each:
            for _, chunk in self.chunks(query):
                with self.tgt.begin():
                    write_rows(self.tgt, into, self.names, chunk)
                self.counted(result, chunk)
            return
        with rows_writer(self.tgt, into, self.names) as write:
            for raw, chunk in self.chunks(query):
                columns = list(zip(*raw, strict=True)) if self.fits and raw else None
                if self.fits and columns:
                    self.fits(columns)
                write(chunk, columns if chunk is raw else None)
                self.counted(result, chunk)

    def counted(self, result: st.TableResult, chunk: Sequence[tuple]) -> None:
        result.rows_read += len(chunk)
        self.progress(result.rows_read)

    def check(self, result: st.TableResult, expected: int, loaded: int, finish: Finish) -> None:
        """The row-count check and the state row, in the transaction that replaces the rows."""
        if loaded != expected or result.rows_read != expected:
            raise RowCountMismatchError(
                f"table {self.source.name!r}: source has {expected} rows, read "
                f"{result.rows_read}, loaded {loaded}; target left unchanged"
            )
        result.rows_written = loaded
        finish(self.tgt, result)


class _Incremental(_Load):
    def run(
        self, result: st.TableResult, key: tuple[str, ...], state: Table, finish: Finish
    ) -> st.TableResult:
        cursor = self.options.cursor
        at = self.names.index(cursor)
        with self.tgt.begin():
            ensure_target(self.tgt, self.target)
            delta = create_staging(self.tgt, self.target)
        result.watermark_after = result.watermark_before
        query = self.query(cursor, result.watermark_before)
        as_cursor = cursor_value(self.source, cursor)
        for raw, chunk in self.chunks(query):
            seen = [as_cursor(row[at]) for row in raw if row[at] is not None]
            pending = replace(
                result,
                rows_read=result.rows_read + len(chunk),
                watermark_after=max([*seen, *_present(result.watermark_after)], default=None),
                outcome="running",
            )
            with self.tgt.begin():
                write_rows(self.tgt, delta, self.names, chunk)
                pending.rows_written += upsert_rows(self.tgt, self.target, key, delta, self.names)
                st.save_state(self.tgt, state, pending)
            # Only what committed counts: a failure records the watermark this chunk reached.
            result.rows_read = pending.rows_read
            result.rows_written = pending.rows_written
            result.watermark_after = pending.watermark_after
            self.progress(result.rows_read)
        result.outcome = "success"
        with self.tgt.begin():
            finish(self.tgt, result)
        return result


def _in_flight(src: Connection, tgt: Connection, source: Table, options: TableOptions) -> InFlight | None:
    """A SQLite source fully loaded into a target that replaces its rows in one transaction: the
    values are checked while they are copied (fit.py), not by a scan before."""
    if options.mode != "full" or src.dialect.name != "sqlite" or not replaces_in_place(tgt):
        return None
    return InFlight(src, source, tgt.dialect)


def _failure_text(exc: BaseException) -> str:
    """The error's first line, plus where PostgreSQL says it happened (`COPY t, line 2, column c`)."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    context = getattr(diag, "context", None)
    return f"{first_line(exc)} ({first_line(Exception(context))})" if context else first_line(exc)


def _named(exc: Exception, table: str) -> Exception:
    """A full disk said plainly, with the table and what the failed load left behind.

    The drivers' own words ("database or disk is full", "could not extend file") say neither which
    table nor that nothing changed; SQLite's SQLITE_FULL and PostgreSQL's disk_full (53100) do.
    """
    orig = getattr(exc, "orig", exc)  # SQLAlchemy wraps the driver's error; COPY through psycopg does not
    if getattr(orig, "sqlite_errorcode", None) != SQLITE_FULL and getattr(orig, "sqlstate", None) != "53100":
        return exc
    return DiskFullError(
        f"disk full while loading {table!r} into the target: its previous rows are kept; "
        f"free space and load it again ({first_line(exc)})"
    )


def _present(value: object) -> list[object]:
    return [] if value is None else [value]


def _record_failure(engine: Engine, state: Table, runs: Table, result: st.TableResult) -> None:
    """Best effort: a target that cannot be reached cannot record why it cannot be reached."""
    try:
        with engine.connect() as conn, conn.begin():
            state.metadata.create_all(conn)
            st.record(conn, state, runs, result)
    except Exception:
        return  # the original error, re-raised by run_table, is what the caller must see
