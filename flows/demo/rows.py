"""The sample's rows, generated from a seed so every build holds the same data.

for table, rows in contents(random.Random(7), big_rows=200_000): ...
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table

from flows.demo.tables import (
    access_log,
    app_settings,
    archive_empty,
    attachments,
    big_numbers,
    camel_table,
    categories,
    currencies,
    customers,
    daily_rates,
    documents,
    events,
    keyword_table,
    measurements,
    order_details,
    orders,
    product_categories,
    products,
    quoted_table,
    schedules,
    sparse,
    unicode_table,
    wide_metrics,
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


def contents(rng: random.Random, big_rows: int) -> list[tuple[Table, list[Row]]]:
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
