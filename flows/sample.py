"""A deterministic sample source database for the one-command demo and the tests.

Its tables hold every shape a load must carry faithfully (awkward names, NULLs, decimals, blobs,
duplicate rows, composite keys, a big table), and `mutate_sample` replays a day of source activity,
including rows tied with the last watermark, so incremental loads can be checked end to end.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    Unicode,
    UnicodeText,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    update,
)

Row = dict[str, Any]
RowFactory = Callable[[random.Random, int, datetime], Row]

BASE = datetime(2024, 1, 1, 8, 0, 0)
CHUNK = 20_000
WORDS = (
    "alpha", "beta", "gamma", "delta", "straße", "café", "naïve", "日本語", "中文", "한국어",
    "emoji🎉", "🚀", "Ωmega", "żółć", "señor", "smörgåsbord", 'quote"d', "it's", "back\\slash",
    "tab\there", "new\nline", "x", "lorem", "ipsum", "dolor", "sit", "amet",
)  # fmt: skip
NAMES = ("Zoë", "José", "Ægir", "Łukasz", "Søren", "Ярослав", "美咲", "O'Brien", 'Dwayne "Rock"')
COUNTRIES = ("DE", "FR", "JP", "BR", "US", "PL", "NO", "CN", None)
STATUSES = ("new", "paid", "shipped", "cancelled", "returned")

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Unicode(200), nullable=False),
    Column("email", String(200)),
    Column("country", String(2)),
    Column("balance", Numeric(12, 2)),
    Column("vip", Boolean),
    Column("birth_date", Date),
    Column("notes", UnicodeText),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, nullable=False),
    Column("order_date", Date, nullable=False),
    Column("total", Numeric(12, 2), nullable=False),
    Column("status", String(20), nullable=False),
    Column("shipped_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
)
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(40), nullable=False),
    Column("payload", UnicodeText),
    Column("severity", SmallInteger),
    Column("occurred_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
order_details = Table(
    "order details",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order id", Integer, nullable=False),
    Column("select", String(40)),
    Column("unit price", Numeric(12, 2)),
    Column("qty.", Integer),
    Column("Ümlaut column", Unicode(100)),
    Column("updated_at", DateTime, nullable=False),
)

INCREMENTAL_TABLES: dict[str, str] = {
    customers.name: "updated_at",
    orders.name: "updated_at",
    events.name: "updated_at",
    order_details.name: "updated_at",
}

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("sku", String(32), nullable=False),
    Column("name", Unicode(200)),
    Column("price", Numeric(12, 2)),
    Column("weight_kg", Float),
    Column("in_stock", Boolean),
    Column("description", UnicodeText),
    Column("thumbnail", LargeBinary),
)
categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("parent_id", Integer),
    Column("name", Unicode(100), nullable=False),
)
product_categories = Table(
    "product_categories",
    metadata,
    Column("product_id", Integer, primary_key=True, autoincrement=False),
    Column("category_id", Integer, primary_key=True, autoincrement=False),
    Column("rank", SmallInteger),
)
currencies = Table(
    "currencies",
    metadata,
    Column("code", String(3), primary_key=True),
    Column("name", Unicode(60), nullable=False),
    Column("symbol", Unicode(8)),
    Column("rate_to_eur", Numeric(12, 2)),
)
daily_rates = Table(
    "daily_rates",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("rate", Numeric(12, 2), nullable=False),
    Column("source", Unicode(40)),
)
access_log = Table(
    "access_log",
    metadata,
    Column("ts", DateTime),
    Column("ip", String(45)),
    Column("path", Unicode(200)),
    Column("status", SmallInteger),
    Column("bytes", Integer),
)
archive_empty = Table(
    "archive_empty",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("note", UnicodeText),
    Column("archived_at", DateTime),
)
app_settings = Table(
    "app_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(50), nullable=False),
    Column("value", UnicodeText),
    Column("enabled", Boolean, nullable=False),
    Column("changed_at", DateTime),
)
attachments = Table(
    "attachments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("filename", Unicode(200), nullable=False),
    Column("mime", String(80)),
    Column("content", LargeBinary),
)
big_numbers = Table(
    "big_numbers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("small", SmallInteger),
    Column("regular", Integer),
    Column("big", BigInteger),
    Column("amount", Numeric(12, 2)),
    Column("ratio", Float),
)
documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("title", Unicode(200), nullable=False),
    Column("language", String(8)),
    Column("body", Text),
)
sparse = Table(
    "sparse",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("maybe_int", Integer),
    Column("maybe_big", BigInteger),
    Column("maybe_text", Unicode(100)),
    Column("maybe_amount", Numeric(12, 2)),
    Column("maybe_float", Float),
    Column("maybe_flag", Boolean),
    Column("maybe_day", Date),
    Column("maybe_moment", DateTime),
    Column("maybe_time", Time),
    Column("maybe_blob", LargeBinary),
)
schedules = Table(
    "schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("weekday", SmallInteger, nullable=False),
    Column("opens", Time, nullable=False),
    Column("closes", Time),
    Column("note", Unicode(100)),
)
keyword_table = Table(
    "select",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("from", String(40)),
    Column("where", Unicode(40)),
    Column("group", Integer),
    Column("order", Date),
    Column("user", String(40)),
)
unicode_table = Table(
    "Ünïcode täble",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("naïve", Unicode(100)),
    Column("日本語", Unicode(100)),
    Column("emoji 🎉", Unicode(100)),
    Column("Größe", Numeric(12, 2)),
)
quoted_table = Table(
    'say "hello"',
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column('col "q"', Unicode(100)),
    Column("it's", Unicode(100)),
    Column("semi;colon", Integer),
    Column("MixedCase", Boolean),
)
camel_table = Table(
    "CamelCase",
    metadata,
    Column("Id", Integer, primary_key=True, autoincrement=False),
    Column("CamelValue", Unicode(60)),
    Column("lower", Float),
)
measurements = Table(
    "measurements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("sensor_id", Integer, nullable=False),
    Column("reading", Float),
    Column("ok", Boolean, nullable=False),
    Column("taken_at", DateTime, nullable=False),
)
WIDE_KINDS = (
    ("int", Integer),
    ("float", Float),
    ("amount", Numeric(12, 2)),
    ("text", Unicode(40)),
    ("flag", Boolean),
    ("day", Date),
    ("moment", DateTime),
)
wide_metrics = Table(
    "wide_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    *(Column(f"c{i:02d}_{WIDE_KINDS[i % 7][0]}", WIDE_KINDS[i % 7][1]) for i in range(35)),
)


def build_sample(url: str | URL, big_rows: int = 200_000, seed: int = 7) -> list[str]:
    """Recreate the sample tables from scratch so every build with one seed holds the same data."""
    rng = random.Random(seed)
    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table, rows in _contents(rng, big_rows):
                _insert(conn, table, rows)
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()
    return [table.name for table in metadata.sorted_tables]


def mutate_sample(url: str | URL, seed: int = 11) -> dict[str, int]:
    """Replay a day of source activity: updates, inserts, and new rows tied with the old watermark.

    The tie rows are the case an incremental load using `>` would miss: they arrive after the last
    load but carry exactly the watermark value it recorded.
    """
    rng = random.Random(seed)
    engine = create_engine(url)
    changed: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            for name, cursor in INCREMENTAL_TABLES.items():
                table = metadata.tables[name]
                changed[name] = _mutate(conn, rng, table, table.c[cursor], FACTORIES[name])
    finally:
        engine.dispose()
    return changed


def write_sample_config(path: str | Path, source_url: str, target_url: str) -> Path:
    """Write the demo's config: discover every table, load the sample's incremental ones by cursor."""
    lines = [
        "[source]",
        f"url = {_toml_string(source_url)}",
        "",
        "[target]",
        f"url = {_toml_string(target_url)}",
        "",
        "[tables]",
        "discover = true",
        "",
        "[tables.defaults]",
        "chunk_size = 5000",
    ]
    for name, cursor in INCREMENTAL_TABLES.items():
        lines += [
            "",
            f"[table.{_toml_string(name)}]",
            'mode = "incremental"',
            f"cursor = {_toml_string(cursor)}",
        ]
    target = Path(path)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _toml_string(value: str) -> str:
    """A TOML basic string; TOML rejects raw control characters, so those are \\u-escaped."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(table), rows[start : start + CHUNK])


def _mutate(conn: Connection, rng: random.Random, table: Table, cursor: Column, factory: RowFactory) -> int:
    watermark = conn.execute(select(func.max(cursor))).scalar_one() or BASE
    ids = sorted(conn.execute(select(table.c.id)).scalars())
    next_id = (ids[-1] if ids else 0) + 1

    def later() -> datetime:
        return watermark + timedelta(hours=1 + rng.randrange(12), minutes=rng.choice((0, 30)))

    touched = rng.sample(ids, k=max(1, len(ids) // 40))
    values = [c for c in table.columns if not c.primary_key]
    statement = update(table).where(table.c.id == bindparam("pk"))
    statement = statement.values({c: bindparam(f"v{i}") for i, c in enumerate(values)})
    params = []
    for pk in touched:
        row = factory(rng, pk, later())
        params.append({"pk": pk, **{f"v{i}": row[c.name] for i, c in enumerate(values)}})
    conn.execute(statement, params)

    ties = [factory(rng, next_id + i, watermark) for i in range(2)]
    fresh = [factory(rng, next_id + 2 + i, later()) for i in range(rng.randrange(20, 60))]
    _insert(conn, table, ties + fresh)
    return len(touched) + len(ties) + len(fresh)


def _money(rng: random.Random, limit: int = 10**8) -> Decimal:
    return Decimal(rng.randrange(-limit, limit)).scaleb(-2)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def _maybe(rng: random.Random, value: Any, null_share: float = 0.2) -> Any:
    return None if rng.random() < null_share else value


def _moment(rng: random.Random, minutes: int) -> datetime:
    return BASE + timedelta(minutes=rng.randrange(minutes))


def _day(rng: random.Random) -> date:
    return date(1950, 1, 1) + timedelta(days=rng.randrange(30_000))


def _customer(rng: random.Random, pk: int, updated_at: datetime) -> Row:
    name = f"{rng.choice(NAMES)} {rng.choice(WORDS)}"
    return {
        "id": pk,
        "name": name,
        "email": _maybe(rng, f"user{pk}@example.com"),
        "country": rng.choice(COUNTRIES),
        "balance": _maybe(rng, _money(rng)),
        "vip": _maybe(rng, rng.random() < 0.1),
        "birth_date": _maybe(rng, _day(rng), 0.3),
        "notes": _maybe(rng, _text(rng, rng.randrange(1, 40)), 0.6),
        "created_at": updated_at - timedelta(days=rng.randrange(400)),
        "updated_at": updated_at,
    }


def _order(rng: random.Random, pk: int, updated_at: datetime) -> Row:
    shipped = rng.random() < 0.6
    return {
        "id": pk,
        "customer_id": rng.randrange(1, 2001),
        "order_date": updated_at.date(),
        "total": abs(_money(rng, 10**7)),
        "status": rng.choice(STATUSES),
        "shipped_at": updated_at + timedelta(hours=rng.randrange(1, 72)) if shipped else None,
        "updated_at": updated_at,
    }


def _event(rng: random.Random, pk: int, updated_at: datetime) -> Row:
    return {
        "id": pk,
        "kind": rng.choice(("click", "view", "purchase", "error", "ログイン")),
        "payload": _maybe(rng, '{"msg": "' + _text(rng, 5).replace('"', "'") + '"}'),
        "severity": _maybe(rng, rng.randrange(-3, 8)),
        "occurred_at": updated_at - timedelta(seconds=rng.randrange(3600)),
        "updated_at": updated_at,
    }


def _order_detail(rng: random.Random, pk: int, updated_at: datetime) -> Row:
    return {
        "id": pk,
        "order id": rng.randrange(1, 5001),
        "select": rng.choice(("from", "where", "drop table", "1=1; --", None)),
        "unit price": _maybe(rng, abs(_money(rng, 10**6)), 0.1),
        "qty.": rng.randrange(-2, 50),
        "Ümlaut column": _maybe(rng, rng.choice(WORDS), 0.5),
        "updated_at": updated_at,
    }


FACTORIES: dict[str, RowFactory] = {
    customers.name: _customer,
    orders.name: _order,
    events.name: _event,
    order_details.name: _order_detail,
}


def _contents(rng: random.Random, big_rows: int) -> list[tuple[Table, list[Row]]]:
    """Every table's rows; minute-grained cursors on more rows than minutes give watermark ties."""
    micro = (0, 0, 1, 500_000, 999_999)
    event_times = [
        BASE + timedelta(seconds=rng.randrange(2000), microseconds=rng.choice(micro)) for _ in range(3000)
    ]
    return [
        (customers, [_customer(rng, i, _moment(rng, 1500)) for i in range(1, 2001)]),
        (orders, [_order(rng, i, _moment(rng, 3000)) for i in range(1, 5001)]),
        (events, [_event(rng, i + 1, ts) for i, ts in enumerate(event_times)]),
        (order_details, [_order_detail(rng, i, _moment(rng, 2500)) for i in range(1, 4001)]),
        (products, [_product(rng, i) for i in range(1, 501)]),
        (categories, _categories(rng)),
        (product_categories, _product_categories(rng)),
        (currencies, _currencies(rng)),
        (daily_rates, _daily_rates(rng)),
        (access_log, _access_log(rng)),
        (archive_empty, []),
        (app_settings, [_app_setting()]),
        (attachments, [_attachment(rng, i) for i in range(1, 201)]),
        (big_numbers, _big_numbers(rng)),
        (documents, [_document(rng, i) for i in range(1, 31)]),
        (sparse, [_sparse(rng, i) for i in range(1, 801)]),
        (schedules, [_schedule(rng, i) for i in range(1, 71)]),
        (keyword_table, [_keyword(rng, i) for i in range(1, 51)]),
        (unicode_table, [_unicode(rng, i) for i in range(1, 101)]),
        (quoted_table, [_quoted(rng, i) for i in range(1, 41)]),
        (camel_table, [_camel(rng, i) for i in range(1, 21)]),
        (wide_metrics, [_wide(rng, i) for i in range(1, 301)]),
        (measurements, _measurements(rng, big_rows)),
    ]


def _product(rng: random.Random, pk: int) -> Row:
    return {
        "id": pk,
        "sku": f"SKU-{pk:06d}",
        "name": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
        "price": abs(_money(rng, 10**6)),
        "weight_kg": _maybe(rng, rng.uniform(0.001, 500.0)),
        "in_stock": rng.random() < 0.7,
        "description": _maybe(rng, _text(rng, rng.randrange(5, 200)), 0.3),
        "thumbnail": _maybe(rng, rng.randbytes(rng.randrange(16, 512)), 0.5),
    }


def _categories(rng: random.Random) -> list[Row]:
    return [
        {"id": i, "parent_id": rng.randrange(1, i) if i > 5 else None, "name": rng.choice(WORDS)}
        for i in range(1, 61)
    ]


def _product_categories(rng: random.Random) -> list[Row]:
    pairs = sorted({(rng.randrange(1, 501), rng.randrange(1, 61)) for _ in range(1300)})
    return [{"product_id": p, "category_id": c, "rank": _maybe(rng, rng.randrange(100))} for p, c in pairs]


def _currencies(rng: random.Random) -> list[Row]:
    known = [
        ("EUR", "Euro", "€"), ("USD", "US dollar", "$"), ("JPY", "日本円", "¥"),
        ("GBP", "Pound sterling", "£"), ("PLN", "Złoty", "zł"), ("BTC", "Bitcoin", "₿"),
        ("XXX", "No currency", None), ("INR", "Indian rupee", "₹"), ("KRW", "원", "₩"),
    ]  # fmt: skip
    return [
        {"code": code, "name": name, "symbol": symbol, "rate_to_eur": _money(rng, 10**6)}
        for code, name, symbol in known
    ]


def _daily_rates(rng: random.Random) -> list[Row]:
    return [
        {
            "currency": code,
            "day": date(2024, 1, 1) + timedelta(days=d),
            "rate": _money(rng, 10**5),
            "source": _maybe(rng, "ECB"),
        }
        for code in ("USD", "JPY", "GBP", "PLN")
        for d in range(90)
    ]


def _access_log(rng: random.Random) -> list[Row]:
    rows = [
        {
            "ts": _maybe(rng, _moment(rng, 600), 0.05),
            "ip": rng.choice(("10.0.0.1", "192.168.1.20", "::1", "2001:db8::7", None)),
            "path": rng.choice(("/", "/café", "/api/v1/orders?id=1&x=ü", "/日本", "/a b")),
            "status": rng.choice((200, 200, 200, 301, 404, 500)),
            "bytes": _maybe(rng, rng.randrange(0, 2**31)),
        }
        for _ in range(1500)
    ]
    duplicates = [dict(rows[rng.randrange(len(rows))]) for _ in range(60)]
    duplicates += [dict(rows[0])] * 3
    return rows + duplicates


def _app_setting() -> Row:
    return {
        "id": 1,
        "name": "feature.flags",
        "value": "dark_mode=on; beta=off; greeting=Grüß Gott 👋",
        "enabled": True,
        "changed_at": BASE,
    }


def _attachment(rng: random.Random, pk: int) -> Row:
    size = rng.choice((0, 1, 100, 4096, 65_536))
    content = None if pk % 17 == 0 else bytes(range(256))[:size] + rng.randbytes(max(0, size - 256))
    return {
        "id": pk,
        "filename": f"{rng.choice(WORDS)}_{pk}.bin",
        "mime": rng.choice(("application/octet-stream", "image/png", None)),
        "content": content,
    }


def _big_numbers(rng: random.Random) -> list[Row]:
    edges = [
        (-(2**15), -(2**31), -(2**63), Decimal("-9999999999.99"), -1.7976931348623157e308),
        (2**15 - 1, 2**31 - 1, 2**63 - 1, Decimal("9999999999.99"), 1.7976931348623157e308),
        (0, 0, 0, Decimal("0.00"), 0.0),
        (-1, -1, -1, Decimal("-0.01"), 2.2250738585072014e-308),
    ]
    rows = [{"small": s, "regular": r, "big": b, "amount": a, "ratio": f} for s, r, b, a, f in edges]
    rows += [
        {
            "small": rng.randrange(-(2**15), 2**15),
            "regular": rng.randrange(-(2**31), 2**31),
            "big": rng.randrange(-(2**63), 2**63),
            "amount": _money(rng, 10**12),
            "ratio": _maybe(rng, rng.uniform(-1e12, 1e12) / 3),
        }
        for _ in range(96)
    ]
    return [{"id": i, **row} for i, row in enumerate(rows, start=1)]


def _document(rng: random.Random, pk: int) -> Row:
    return {
        "id": pk,
        "title": f"Document {pk}: {rng.choice(WORDS)}",
        "language": rng.choice(("en", "de", "ja", "zh-Hant", None)),
        "body": _text(rng, rng.choice((0, 10, 2_000, 20_000))),
    }


def _sparse(rng: random.Random, pk: int) -> Row:
    if pk == 1:
        return {"id": 1} | {c.name: None for c in sparse.columns if c.name != "id"}
    share = 0.85
    return {
        "id": pk,
        "maybe_int": _maybe(rng, rng.randrange(-1000, 1000), share),
        "maybe_big": _maybe(rng, rng.randrange(-(2**62), 2**62), share),
        "maybe_text": _maybe(rng, rng.choice(("", " ", "NULL", "None", "null", "🎉")), share),
        "maybe_amount": _maybe(rng, _money(rng), share),
        "maybe_float": _maybe(rng, rng.random(), share),
        "maybe_flag": _maybe(rng, rng.random() < 0.5, share),
        "maybe_day": _maybe(rng, _day(rng), share),
        "maybe_moment": _maybe(rng, _moment(rng, 10**6), share),
        "maybe_time": _maybe(rng, time(rng.randrange(24), rng.randrange(60)), share),
        "maybe_blob": _maybe(rng, rng.randbytes(8), share),
    }


def _schedule(rng: random.Random, pk: int) -> Row:
    opens = time(rng.randrange(6, 12), rng.choice((0, 15, 30, 45)))
    closes = time(rng.randrange(13, 24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6))
    return {
        "id": pk,
        "weekday": pk % 7,
        "opens": opens,
        "closes": _maybe(rng, closes),
        "note": _maybe(rng, rng.choice(WORDS), 0.5),
    }


def _keyword(rng: random.Random, pk: int) -> Row:
    return {
        "id": pk,
        "from": rng.choice(("select", "insert", "delete", "--", "';")),
        "where": _maybe(rng, rng.choice(WORDS)),
        "group": rng.randrange(-5, 5),
        "order": _day(rng),
        "user": _maybe(rng, "root"),
    }


def _unicode(rng: random.Random, pk: int) -> Row:
    return {
        "id": pk,
        "naïve": rng.choice(("naïve", "façade", "Ångström", "ﬁ ligature", "e\u0301")),
        "日本語": _maybe(rng, rng.choice(("こんにちは", "東京", "漢字かな交じり文", "🍣"))),
        "emoji 🎉": rng.choice(("🎉", "👩‍👩‍👧‍👦", "🇩🇪", "❤️", "plain")),
        "Größe": _maybe(rng, _money(rng, 10**5)),
    }


def _quoted(rng: random.Random, pk: int) -> Row:
    return {
        "id": pk,
        'col "q"': rng.choice(('"', '""', '"\'"', 'a"b', "x")),
        "it's": _maybe(rng, rng.choice(("it's", "'", "''", "O'Neil"))),
        "semi;colon": rng.randrange(100),
        "MixedCase": _maybe(rng, rng.random() < 0.5),
    }


def _camel(rng: random.Random, pk: int) -> Row:
    return {"Id": pk, "CamelValue": rng.choice(WORDS), "lower": rng.random() * 100}


def _wide(rng: random.Random, pk: int) -> Row:
    makers = (
        lambda: rng.randrange(-(10**6), 10**6),
        lambda: rng.gauss(0, 1000),
        lambda: _money(rng),
        lambda: rng.choice(WORDS),
        lambda: rng.random() < 0.5,
        lambda: _day(rng),
        lambda: _moment(rng, 10**5),
    )
    columns = list(wide_metrics.columns)[1:]
    return {"id": pk} | {c.name: _maybe(rng, makers[i % 7](), 0.1) for i, c in enumerate(columns)}


def _measurements(rng: random.Random, count: int) -> list[Row]:
    random_float, below, pick = rng.random, rng.randrange, rng.choice
    minutes = [BASE + timedelta(minutes=m) for m in range(1440)]
    return [
        {
            "id": i,
            "sensor_id": below(1, 251),
            "reading": random_float() * 100 - 20,
            "ok": random_float() < 0.97,
            "taken_at": pick(minutes),
        }
        for i in range(1, count + 1)
    ]
