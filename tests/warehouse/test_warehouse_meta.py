import pyarrow as pa
import pytest
from wh_factory import SLUG, make_batch, make_schema

from transforms.model import ColumnSpec, Question, TableSchema
from warehouse import connect, create_label_views, ensure_tables, language_codes, upsert_batch, write_labels


def label_tables(fr_assets: str = "Radio FM") -> dict[str, pa.Table]:
    return {
        "questions": pa.table(
            {
                "form": [SLUG, SLUG],
                "table": ["submissions", "members"],
                "column": ["region", "sex"],
                "type": ["select_one", "select_one"],
                "label_en": ["Region", "Sex"],
                "label_fr": ["Région", "Sexe"],
            }
        ),
        "choices": pa.table(
            {
                "list_name": ["regions", "regions", "sexes", "sexes", "assets", "assets"],
                "name": ["north", "south", "f", "m", "radio", "bike"],
                "label_en": ["North", "South", "Female", "Male", "Radio", "Bicycle"],
                "label_fr": ["Nord", "Sud", "Femme", "Homme", fr_assets, None],
            }
        ),
    }


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "warehouse.duckdb")
    ensure_tables(c, make_schema())
    upsert_batch(
        c, make_schema(), make_batch([1, 2], members=2, selected={1: ["radio", "bike", "tv"]}), run_id="r1"
    )
    yield c
    c.close()


def test_language_codes():
    assert language_codes(make_schema()) == ["en", "fr"]
    untranslated = make_schema()
    untranslated.languages = []
    assert language_codes(untranslated) == ["default"]


def test_write_labels_replaces_the_forms_rows_and_adds_language_columns(con):
    write_labels(con, make_schema(), label_tables())
    write_labels(con, make_schema(), label_tables())
    assert con.execute("SELECT form, uid, title, languages, versions FROM meta.forms").fetchall() == [
        (SLUG, "aHouseholdUid", "Household survey", ["English (en)", "Français (fr)"], ["v1"])
    ]
    assert con.execute("SELECT count(*), count(DISTINCT form) FROM meta.choices").fetchone() == (6, 1)
    assert con.execute("SELECT label_fr FROM meta.questions WHERE \"column\" = 'sex'").fetchone() == ("Sexe",)
    # another form with a third language: a new column, the first form's rows untouched
    other = make_schema(slug="other")
    other.languages = ["English (en)", "العربية (ar)"]
    write_labels(
        con, other, {"choices": pa.table({"list_name": ["regions"], "name": ["north"], "label_ar": ["شمال"]})}
    )
    assert con.execute(
        "SELECT form, name, label_en, label_ar FROM meta.choices WHERE list_name = 'regions' "
        "ORDER BY form, name"
    ).fetchall() == [
        ("hh", "north", "North", None),
        ("hh", "south", "South", None),
        ("other", "north", None, "شمال"),
    ]
    assert con.execute("SELECT count(*) FROM meta.forms").fetchone()[0] == 2


def test_label_views_show_labels_per_language(con):
    write_labels(con, make_schema(), label_tables())
    views = create_label_views(con, make_schema())
    assert sorted(views) == sorted(
        [
            "submissions_en",
            "members_en",
            "assets__selected_en",
            "submissions_fr",
            "members_fr",
            "assets__selected_fr",
        ]
    )
    q = con.execute
    assert q(f'SELECT _id, region, hh_size FROM "{SLUG}".submissions_en ORDER BY _id').fetchall() == [
        (1, "North", 2),
        (2, "South", 2),
    ]
    assert q(f'SELECT region FROM "{SLUG}".submissions_fr ORDER BY _id').fetchall() == [("Nord",), ("Sud",)]
    assert q(f'SELECT _key, sex, age FROM "{SLUG}".members_fr ORDER BY _key').fetchall() == [
        ("1/members[1]", "Femme", 21),
        ("1/members[2]", "Homme", 22),
        ("2/members[1]", "Femme", 21),
        ("2/members[2]", "Homme", 22),
    ]
    # a choice without a label in that language, or not in the list at all, shows its name
    assert q(f'SELECT choice FROM "{SLUG}".assets__selected_fr ORDER BY choice').fetchall() == [
        ("Radio FM",),
        ("bike",),
        ("tv",),
    ]
    # same columns, same order as the table
    cols = [d[0] for d in q(f'SELECT * FROM "{SLUG}".submissions_en').description]
    assert cols == [d[0] for d in q(f'SELECT * FROM "{SLUG}".submissions').description]
    # relabelling needs no view change: views read meta.choices live
    write_labels(con, make_schema(), label_tables(fr_assets="Poste radio"))
    assert q(
        f'SELECT choice FROM "{SLUG}".assets__selected_fr WHERE _submission_id = 1 ORDER BY choice'
    ).fetchall() == [("Poste radio",), ("bike",), ("tv",)]


def test_label_views_follow_schema_evolution_and_bridge_kind(con):
    schema = make_schema([ColumnSpec("water", "VARCHAR", "water")])
    schema.questions["water"] = Question(
        "water", "water", "select_one", "submissions", "water", list_name="regions"
    )
    # transforms may declare bridge tables in the schema (kind="bridge"), named as it likes
    schema.questions["members/langs"] = Question(
        "members/langs", "langs", "select_multiple", "members", "langs", list_name="sexes"
    )
    schema.tables["members__langs__selected"] = TableSchema(
        "members__langs__selected",
        "members/langs",
        "members",
        [
            ColumnSpec("_submission_id", "BIGINT"),
            ColumnSpec("_key", "VARCHAR"),
            ColumnSpec("choice", "VARCHAR"),
        ],
        kind="bridge",
    )
    ensure_tables(con, schema)
    batch = make_batch([3])
    batch.tables["submissions"] = batch.tables["submissions"].append_column("water", pa.array(["north"]))
    batch.tables["members__langs__selected"] = pa.table(
        {"_submission_id": [3], "_key": ["3/members[1]"], "choice": ["m"]}
    )
    upsert_batch(con, schema, batch, run_id="r2")
    write_labels(con, schema, label_tables())
    create_label_views(con, schema)
    assert con.execute(f'SELECT region, water FROM "{SLUG}".submissions_en WHERE _id = 3').fetchall() == [
        ("North", "North")
    ]
    assert con.execute(f'SELECT choice FROM "{SLUG}".members__langs__selected_fr').fetchall() == [("Homme",)]


def test_write_labels_defaults_to_the_schema_dictionary(con):
    write_labels(con, make_schema())
    got = con.execute(
        "SELECT name, label_en, label_fr FROM meta.choices WHERE list_name = 'sexes' ORDER BY name"
    ).fetchall()
    assert got == [("f", "Female", "Femme"), ("m", "Male", "Homme")]
