"""Times `to_tables` on generated household submissions: `.venv/bin/python bench/flatten_bench.py [n]`.

Each submission has 4 members (a repeat) with one nested repeat row each, a select_multiple, a geopoint,
dates and numbers, in KoBo's wire format. Targets: 10 000 in about a second (issue 3), 100 000 in at most
3 s (issue 9). CPU time is printed too: wall time on the shared 2-core machine varies with whatever else runs.
"""

from __future__ import annotations

import random
import sys
import time

from transforms.flatten import to_tables
from transforms.schema import to_form_schema

SURVEY = [
    {"type": "start", "name": "start", "$kuid": "k1"},
    {"type": "end", "name": "end", "$kuid": "k2"},
    {"type": "today", "name": "today", "$kuid": "k3"},
    {"type": "begin_group", "name": "hh", "$kuid": "k4"},
    {"type": "text", "name": "head_name", "$kuid": "k5"},
    {"type": "integer", "name": "size", "$kuid": "k6"},
    {"type": "decimal", "name": "income", "$kuid": "k7"},
    {"type": "select_multiple", "name": "assets", "select_from_list_name": "assets", "$kuid": "k8"},
    {"type": "geopoint", "name": "location", "$kuid": "k9"},
    {"type": "end_group", "$kuid": "k10"},
    {"type": "begin_repeat", "name": "members", "$kuid": "k11"},
    {"type": "text", "name": "m_name", "$kuid": "k12"},
    {"type": "integer", "name": "m_age", "$kuid": "k13"},
    {"type": "select_one", "name": "m_sex", "select_from_list_name": "sex", "$kuid": "k14"},
    {"type": "begin_repeat", "name": "visits", "$kuid": "k15"},
    {"type": "date", "name": "v_date", "$kuid": "k16"},
    {"type": "end_repeat", "$kuid": "k17"},
    {"type": "end_repeat", "$kuid": "k18"},
]
CHOICES = [{"list_name": "assets", "name": n, "label": [n]} for n in ("radio", "phone", "bike", "tv")] + [
    {"list_name": "sex", "name": n, "label": [n]} for n in ("m", "f")
]


def submissions(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        members = [
            {
                "members/m_name": f"P{i}-{j}",
                "members/m_age": str(rnd.randint(0, 90)),
                "members/m_sex": rnd.choice("mf"),
                "members/visits": [{"members/visits/v_date": f"2026-02-{rnd.randint(10, 28)}"}],
            }
            for j in range(4)
        ]
        out.append(
            {
                "_id": 10_000_000 + i,
                "_uuid": f"uuid-{i}",
                "meta/rootUuid": f"uuid:uuid-{i}",
                "_submission_time": "2026-03-02T06:21:52",
                "__version__": "v1",
                "_validation_status": {},
                "_status": "submitted_via_web",
                "start": "2026-03-02T09:14:05.120+03:00",
                "end": "2026-03-02T09:21:40.004+03:00",
                "today": "2026-03-02",
                "hh/head_name": f"Head {i}",
                "hh/size": "4",
                "hh/income": f"{rnd.random() * 1000:.2f}",
                "hh/assets": "radio phone",
                "hh/location": "-1.2921 36.8219 1700 5",
                "members": members,
            }
        )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    schema = to_form_schema(
        {"uid": "aBench", "name": "bench"}, {"v1": {"survey": SURVEY, "choices": CHOICES}}, "bench"
    )
    subs = submissions(n)
    t0, c0 = time.perf_counter(), time.process_time()
    batch = to_tables(subs, schema)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = {k: v.num_rows for k, v in batch.tables.items()}
    print(
        f"{n} submissions -> {rows} in {elapsed:.2f}s, CPU {cpu:.2f}s ({n / elapsed:,.0f} submissions/s); "
        f"quarantined {len(batch.quarantine)}"
    )


if __name__ == "__main__":
    main()
