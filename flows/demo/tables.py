"""The sample source's tables: every shape a load must carry faithfully (awkward names, NULLs,
decimals, blobs, duplicate rows, composite keys, no primary key, a big table).

    metadata.create_all(engine)
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
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
)

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
