import duckdb
import pytest

from warehouse.sql import qualified, quote_ident, quote_literal


def test_quote_ident_doubles_embedded_quotes():
    assert quote_ident("age") == '"age"'
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("select") == '"select"'
    assert qualified("my form", "t") == '"my form"."t"'


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_quote_ident_rejects_impossible_names(bad):
    with pytest.raises(ValueError):
        quote_ident(bad)


def test_quoted_names_and_literals_round_trip_through_duckdb():
    con = duckdb.connect()
    names = ['x"); DROP TABLE t; --', "ÉTÉ_نام", "order", "a b'c"]
    con.execute(f"CREATE TABLE t ({', '.join(quote_ident(n) + ' VARCHAR' for n in names)})")
    con.execute(f"INSERT INTO t VALUES ({', '.join(quote_literal(n) for n in names)})")
    assert [d[0] for d in con.execute("SELECT * FROM t").description] == names
    assert con.execute("SELECT * FROM t").fetchall() == [tuple(names)]


def test_quote_literal_types():
    assert quote_literal(None) == "NULL"
    assert quote_literal(True) == "TRUE"
    assert quote_literal(3) == "3"
    assert quote_literal("it's") == "'it''s'"
