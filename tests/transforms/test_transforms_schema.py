"""Schema rules that the fixtures do not exercise: type widening, xpath rebuild, label tables."""

from __future__ import annotations

from transforms.flatten import to_tables
from transforms.naming import language_code, snake
from transforms.schema import to_form_schema, to_label_tables


def _v(qtype: str, group: str) -> dict:
    return {
        "survey": [
            {"type": "begin_group", "name": group},
            {"type": qtype, "name": "Age", "label": ["Age", "Âge"]},
            {"type": "end_group"},
        ],
        "translations": ["English (en)", "Français (fr)"],
    }


def test_type_change_widens_and_old_xpath_still_reads() -> None:
    versions = {"v2": _v("text", "g2"), "v1": _v("integer", "g1")}
    schema = to_form_schema({"uid": "aX"}, versions, "x")
    q = schema.questions["g1/Age"]
    assert q.column == "age" and q.xpaths == ("g2/Age", "g1/Age") and q.type == "text"
    assert schema.main.column("age").duckdb_type == "VARCHAR"
    assert len(schema.type_changes) == 1 and "integer in version v1" in schema.type_changes[0]
    subs = [{"_id": 1, "__version__": "v1", "g1/Age": "12"}, {"_id": 2, "g2/Age": "twelve"}]
    batch = to_tables(subs, schema)
    assert batch.tables["submissions"].column("age").to_pylist() == ["12", "twelve"]


def test_an_integer_answer_of_thousands_of_digits_is_quarantined_not_a_crash() -> None:
    """Python refuses to parse more than 4 300 digits: such an answer must not stop the page."""
    schema = to_form_schema({"uid": "aX", "content": _v("integer", "g")}, {}, "x")
    huge, zeros = "9" * 4301, "0" * 5000 + "42"
    subs = [{"_id": 7, "g/Age": huge}, {"_id": 8, "g/Age": "12"}, {"_id": 9, "g/Age": zeros}]
    batch = to_tables(subs, schema)
    assert batch.tables["submissions"].column("age").to_pylist() == [None, 12, 42]
    [rec] = batch.quarantine
    assert (rec.submission_id, rec.column) == (7, "age") and rec.reason.startswith("integer out of range")
    [bad_id] = to_tables([{"_id": "1" * 5000}], schema).quarantine
    assert bad_id.reason.startswith("submission has no integer")


def test_quarantine_reason_has_no_value_and_labels_have_codes() -> None:
    schema = to_form_schema({"uid": "aX", "content": _v("integer", "g")}, {}, "x")
    batch = to_tables([{"_id": 7, "g/Age": "twelve"}], schema)
    assert batch.tables["submissions"].column("age").to_pylist() == [None]
    [rec] = batch.quarantine
    assert (rec.submission_id, rec.column, rec.raw_value) == (7, "age", "twelve")
    assert rec.reason == "not an integer (XLSForm type integer)"
    questions = to_label_tables(schema)["questions"].to_pylist()
    assert questions[0]["label_en"] == "Age" and questions[0]["label_fr"] == "Âge"


def test_naming() -> None:
    assert snake("What is your name?") == "what_is_your_name"
    assert snake("1st") == "q_1st" and snake('"; DROP') == "drop"
    assert len(snake("x" * 300)) == 63
    assert language_code("English (en)") == "en" and language_code(None) == "default"
    assert language_code("Español") == "español"


def test_questions_named_like_kpi_nodes_inside_a_group_are_data() -> None:
    """KPI's `__version__`, `_version_`, `formhub` and `meta/instanceID` are skipped; a question of one of
    those names inside the form's own group is an answer like any other."""
    survey = [
        {"type": "begin_group", "name": "reg"},
        {"type": "text", "name": "instanceID"},
        {"type": "integer", "name": "formhub"},
        {"type": "integer", "name": "_version_"},
        {"type": "end_group"},
        {"type": "begin_group", "name": "meta"},
        {"type": "text", "name": "instanceID"},
        {"type": "end_group"},
        {"type": "calculate", "name": "__version__"},
    ]
    schema = to_form_schema({"uid": "aX", "content": {"survey": survey}}, {}, "x")
    assert {"reg/instanceID", "reg/formhub", "reg/_version_"} <= set(schema.questions)
    assert "meta/instanceID" not in schema.questions and "__version__" not in schema.questions
    subs = [{"_id": 1, "reg/instanceID": "A-17", "reg/formhub": "3", "reg/_version_": "2"}]
    main = to_tables(subs, schema).tables["submissions"]
    q = schema.questions
    xpaths = ("reg/instanceID", "reg/formhub", "reg/_version_")
    got = {x: main.column(q[x].column).to_pylist() for x in xpaths}
    assert got == {"reg/instanceID": ["A-17"], "reg/formhub": [3], "reg/_version_": [2]}
