"""Property tests: random multi-version forms and random (often wrong) submissions: no crash, no loss."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.flatten import to_tables
from transforms.model import MAIN_TABLE
from transforms.schema import to_form_schema, to_label_tables

TYPES = [
    "text",
    "integer",
    "decimal",
    "range",
    "date",
    "datetime",
    "time",
    "select_one",
    "select_multiple",
    "acknowledge",
    "calculate",
    "geopoint",
    "geotrace",
    "geoshape",
    "image",
    "audio",
    "note",
    "start",
    "end",
    "today",
    "hidden",
    "barcode",
]
HOSTILE = [
    "select",
    "from",
    "drop_table",
    "Robert'); DROP TABLE students;--",
    'say "hi"',
    "name",
    "_id",
    "_key",
    "submissions",
    "ñandú",
    "名前",
    "اسم",
    "x" * 120,
    "Group",
    "group",
    "1st",
    "end",
    "start",
    "__version__x",
    "a-b.c",
    "q",
    "Q",
    "with space",
]


def _name(draw: Any, used: set[str]) -> str:
    base = draw(
        st.sampled_from(HOSTILE)
        | st.text(st.characters(blacklist_characters="/ \t\n\r\x00"), min_size=1, max_size=12)
    )
    base = base.replace(" ", "_").replace("/", "_") or "q"
    name = base
    n = 2
    while name in used:
        name = f"{base}{n}"
        n += 1
    used.add(name)
    return name


@st.composite
def forms(draw: Any) -> tuple[list[dict], list[dict]]:
    """A survey as a nested tree: nodes are dicts with kind question/group/repeat."""
    used: set[str] = set()
    counter = iter(range(10_000))

    def node(depth: int) -> dict:
        kind = draw(st.sampled_from(["question"] * 4 + (["group", "repeat"] if depth < 3 else [])))
        kuid = f"k{next(counter)}"
        if kind == "question":
            return {
                "kind": kind,
                "name": _name(draw, used),
                "type": draw(st.sampled_from(TYPES)),
                "kuid": kuid,
            }
        children = [node(depth + 1) for _ in range(draw(st.integers(1, 3)))]
        return {"kind": kind, "name": _name(draw, used), "kuid": kuid, "children": children}

    tree = [node(0) for _ in range(draw(st.integers(1, 5)))]
    choices = [{"list_name": "l", "name": n, "label": [f"L {n}"]} for n in ("a", "b", "1", "Yes", "yes")]
    return tree, choices


def _mutate(draw: Any, tree: list[dict]) -> list[dict]:
    """Next version: some group renamed, some type changed, some question dropped (kuids kept)."""
    out = []
    for n in tree:
        n = dict(n)
        if n["kind"] == "question":
            if draw(st.integers(0, 9)) == 0:
                continue
            if draw(st.integers(0, 5)) == 0:
                n["type"] = draw(st.sampled_from(TYPES))
        else:
            if n["kind"] == "group" and draw(st.booleans()):
                n["name"] = n["name"] + "_r"
            n["children"] = _mutate(draw, n["children"])
        out.append(n)
    return out


def _survey(tree: list[dict]) -> list[dict]:
    rows: list[dict] = []
    for n in tree:
        if n["kind"] == "question":
            row = {"type": n["type"], "name": n["name"], "$kuid": n["kuid"], "label": [n["name"]]}
            if n["type"].startswith("select"):
                row["select_from_list_name"] = "l"
            rows.append(row)
        else:
            rows.append({"type": f"begin_{n['kind']}", "name": n["name"], "$kuid": n["kuid"]})
            rows += _survey(n["children"])
            rows.append({"type": f"end_{n['kind']}"})
    return rows


VALID = {
    "integer": st.integers(-(10**12), 10**12).map(str),
    "decimal": st.floats(allow_nan=False, allow_infinity=False, width=32).map(str),
    "date": st.dates().map(lambda d: d.isoformat()),
    "datetime": st.datetimes().map(lambda d: d.isoformat() + "+03:00"),
    "time": st.times().map(lambda t: t.strftime("%H:%M:%S.000+01:00")),
    "select_multiple": st.lists(st.sampled_from(["a", "b", "1", "zz"]), min_size=1, max_size=3).map(" ".join),
    "acknowledge": st.just("OK"),
    "geopoint": st.tuples(st.floats(-90, 90), st.floats(-180, 180)).map(lambda p: f"{p[0]} {p[1]} 0 5"),
    "geotrace": st.just("1.5 2.5 0 0;1.6 2.6 0 0"),
    "geoshape": st.just("1.5 2.5 0 0;1.6 2.6 0 0;1.7 2.5 0 0;1.5 2.5 0 0"),
}
WRONG = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.just("12 abc"),
    st.just("2021-02-30"),
    st.just("999 999"),
    st.just("x" * 5000),
    st.just("'; DROP TABLE x;--"),
)


def _answers(draw: Any, tree: list[dict], prefix: str) -> dict:
    out: dict[str, Any] = {}
    for n in tree:
        path = f"{prefix}{n['name']}"
        if n["kind"] == "question":
            if n["type"] == "note" or not draw(st.booleans()):
                continue
            kind = {"range": "decimal", "today": "date", "start": "datetime", "end": "datetime"}.get(
                n["type"], n["type"]
            )
            strategy = VALID.get(kind, st.text(min_size=1, max_size=40))
            value = draw(strategy | WRONG) if draw(st.integers(0, 3)) == 0 else draw(strategy)
            if value not in ("", None):
                out[path] = value
        elif n["kind"] == "group":
            out.update(_answers(draw, n["children"], path + "/"))
        else:
            instances = [_answers(draw, n["children"], path + "/") for _ in range(draw(st.integers(0, 3)))]
            instances = [i for i in instances if i]  # KoBo drops empty instances
            if instances:
                out[path] = instances
    return out


@st.composite
def cases(draw: Any) -> tuple[dict, dict[str, dict], list[dict]]:
    tree, choices = draw(forms())
    trees = [tree]
    for _ in range(draw(st.integers(1, 2))):
        trees.append(_mutate(draw, trees[-1]))
    versions = {
        f"v{i}": {"survey": _survey(t), "choices": choices, "translations": [None]}
        for i, t in enumerate(trees)
    }
    newest_first = dict(reversed(list(versions.items())))
    asset = {
        "uid": "aHyp",
        "name": "hyp",
        "deployed_versions": {"results": [{"uid": v} for v in newest_first]},
    }
    subs = []
    for i in range(draw(st.integers(1, 6))):
        vi = draw(st.integers(0, len(trees) - 1))
        sub = _answers(draw, trees[vi], "")
        sub.update(
            {
                "_id": 1000 + i,
                "__version__": draw(st.sampled_from([f"v{vi}", f"v{vi}", "unknown"])),
                "_submission_time": "2024-01-02T03:04:05",
                "_validation_status": {},
            }
        )
        subs.append(sub)
    return asset, newest_first, subs


def _expected_cells(schema: Any, sub: dict) -> list[tuple[str, str, str, Any]]:
    """(table, column, row_key, value) for every answer of one submission, walking it like KoBo nests it."""
    version = sub["__version__"] if sub["__version__"] in schema.version_questions else schema.versions[0]
    qmap, rmap = schema.version_questions[version], schema.version_repeats[version]
    out = []

    def walk(obj: dict, key: str) -> None:
        for k, v in obj.items():
            if k in rmap:
                for pos, inst in enumerate(v, start=1):
                    walk(inst, f"{key}/{rmap[k]}[{pos}]")
            elif k in qmap:
                q = schema.questions[qmap[k]]
                out.append((q.table, q.column, key, v))

    walk({k: v for k, v in sub.items() if not k.startswith("_")}, str(sub["_id"]))
    return out


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(cases())
def test_every_answer_lands_in_one_typed_cell_or_quarantine(
    case: tuple[dict, dict[str, dict], list[dict]],
) -> None:
    asset, versions, subs = case
    schema = to_form_schema(asset, versions, "hyp")
    batch = to_tables(subs, schema)
    assert batch.submission_ids == [s["_id"] for s in subs]
    assert batch.tables[MAIN_TABLE].num_rows == len(subs)
    for name, table in batch.tables.items():
        assert table.column_names == [c.name for c in schema.tables[name].columns]
    index = {}
    for name, table in batch.tables.items():
        if schema.tables[name].kind != "bridge":
            key = "_id" if name == MAIN_TABLE else "_key"
            index[name] = {str(k): i for i, k in enumerate(table.column(key).to_pylist())}
    quarantined = {(q.table, q.column, q.row_key) for q in batch.quarantine}
    for sub in subs:
        for table, column, row_key, value in _expected_cells(schema, sub):
            row = index[table].get(row_key)
            assert row is not None, f"row {row_key} missing from {table}"
            cell = batch.tables[table].column(column)[row].as_py()
            in_quarantine = (table, column, row_key) in quarantined
            assert (cell is not None) != in_quarantine, (table, column, json.dumps(value, default=str)[:80])
    for q in batch.quarantine:
        # the reason never quotes the value (short values such as ")" may appear in it by chance)
        assert q.raw_value is None or len(q.raw_value) < 4 or q.raw_value not in q.reason
    labels = to_label_tables(schema)
    assert labels["questions"].num_rows == len({q.xpath for q in schema.questions.values()})
    assert all(c.isidentifier() for t in schema.tables.values() for c in (col.name for col in t.columns))
    assert all(name.isidentifier() for name in schema.tables)
