"""The columnar cast agrees with the per-value casters on every value, plain or not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.flatten import _CASTERS, _Bad, _cast_strings

SAMPLES = {
    "integer": [
        "25",
        "-7",
        "+5",
        " 12 ",
        "25.0",
        "1e3",
        "007",
        "9223372036854775807",
        "99999999999999999999",
        "x",
    ],
    "decimal": ["1.5", "-0", "00.5", "1.", ".5", "1e400", "3", "abc", "1.25e-3", " 2.5"],
    "date": ["2026-03-02", "2021-02-30", "0000-01-01", "0001-01-01", "2026-W09-1", "20260302", " 2026-03-02"],
    "datetime": [
        "2026-03-02T09:14:05.120+03:00",
        "2026-03-02T09:14:05Z",
        "2026-03-02T09:14:05-00:00",
        "2026-03-02T09:14:05",
        "2026-03-02 09:14:05.123456",
        "2026-03-02T09:14:05.1234567+01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-02:00",
        "2026-02-30T00:00:00Z",
        "2026-03-02T24:00:00",
        "2026-03-02",
    ],
    "submission_time": ["2026-03-02T06:21:52", "2026-03-02T06:21:52+03:00", "2026-03-02T06:21:52.5Z", "5"],
    "time": [
        "09:14:05.120+03:00",
        "23:59:59",
        "24:00:00",
        "09:14",
        "09:14:05.1234567",
        "09:14:05Z",
        "9:14:05",
    ],
    "acknowledge": ["OK", "ok", "true", "1", "yes", "false", "0", "no", "True", " OK ", "maybe"],
    "geopoint": [
        "-1.2921 36.8219 1700 5",
        "1 2",
        "1 2 3",
        "91 0 0 0",
        "0 181",
        "1e1 2",
        "1 2;",
        "1\t2 0 0",
        "x",
    ],
    "geotrace": ["1.5 2.5 0 0;1.6 2.6 0 0", "1 2"],
    "geoshape": ["1.5 2.5 0 0;1.6 2.6 0 0;1.7 2.5 0 0", "1 2"],
}


def _columnar(values: list[str | None], kind: str) -> tuple[list, dict[int, str]]:
    bad: dict[int, str] = {}
    out = _cast_strings(values, kind, lambda i, _text, b: bad.__setitem__(i, b.reason))
    return out.to_pylist(), bad


def _each(values: list[str | None], kind: str) -> tuple[list, dict[int, str]]:
    out, bad = [], {}
    for i, v in enumerate(values):
        cast = None if v is None else _CASTERS[kind](v)
        if isinstance(cast, _Bad):
            bad[i], cast = cast.reason, None
        out.append(cast)
    return out, bad


def test_samples_cast_as_the_per_value_casters_do() -> None:
    for kind, samples in SAMPLES.items():
        values = [*samples, None]
        assert _columnar(values, kind) == _each(values, kind), kind


def test_known_values() -> None:
    out, bad = _columnar(["25", "25.0", "x", None], "integer")
    assert out == [25, 25, None, None] and bad == {2: "not an integer"}
    out, bad = _columnar(["2026-03-02T09:14:05.120+03:00", "2026-03-02T09:14:05Z"], "datetime")
    assert [v.isoformat() for v in out] == ["2026-03-02T06:14:05.120000+00:00", "2026-03-02T09:14:05+00:00"]
    out, bad = _columnar(["2021-02-30", "2021-02-28"], "date")
    assert out[0] is None and str(out[1]) == "2021-02-28" and bad == {0: "not a date (YYYY-MM-DD)"}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(
        st.none()
        | st.sampled_from([s for v in SAMPLES.values() for s in v])
        | st.text(alphabet="0123456789-+.:TZ e;", max_size=30),
        max_size=20,
    ),
)
def test_random_columns_cast_as_the_per_value_casters_do(kind: str, values: list[str | None]) -> None:
    assert _columnar(values, kind) == _each(values, kind)
