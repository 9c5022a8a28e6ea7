"""One page of submissions through the privacy policy and flattening: the unit of work a transform worker
process runs (pipelines/workers.py), and what a sync runs in-process for small forms."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from config.privacy import PrivacyPolicy
from transforms.attachments import with_attachment_rows
from transforms.columnar import PageLayout, page_layout, transform_page_columns
from transforms.errors import TransformError
from transforms.flatten import to_tables
from transforms.model import MAIN_TABLE, FlatBatch, FormSchema, QuarantineRecord, Question
from transforms.privacy import WithheldQuestion, apply_policy, rejected_by_policy


@dataclass
class TransformedPage:
    """A page as it will be stored: typed Arrow tables and quarantine, plus questions withheld for lack
    of a privacy decision. Holds no raw answer of a question the policy protects."""

    batch: FlatBatch
    withheld: list[WithheldQuestion]


@dataclass
class PageTransform:
    """Everything needed to transform a page of one form (sent once to each worker process)."""

    raw_schema: FormSchema  # the form as KoBo defines it
    schema: FormSchema  # the form as stored (after the privacy policy)
    policy: PrivacyPolicy
    key: bytes = field(repr=False)  # the pseudonymisation key: never in a repr, a log or a traceback

    def __call__(self, submissions: list[dict[str, Any]]) -> TransformedPage:
        # callers pause the cyclic GC around parsing and this (`cyclic_gc_paused`)
        result = apply_policy(submissions, self.raw_schema, self.policy, self.key)
        batch = to_tables(result.submissions, self.schema)
        batch.quarantine[:0] = self.rejected_records(result.rejected, submissions)
        return TransformedPage(with_attachment_rows(batch, result.submissions, self.schema), result.withheld)

    def body(self, body: bytes) -> TransformedPage:
        """The page in a response body of `/api/v2/assets/{uid}/data/`: read in columns when it has the
        usual shape (`transforms.columnar`), else parsed and transformed row by row."""
        page = transform_page_columns(body, self)
        if page is not None:
            return page
        with cyclic_gc_paused():  # parsing the body allocates as much as transforming it
            return self(page_results(body))

    @cached_property
    def layout(self) -> PageLayout | None:
        """How this form's pages are read in columns (None: always row by row); built on first use."""
        return page_layout(self.raw_schema)

    def rejected_records(
        self, rejected: list[tuple[Any, str, str]], submissions: list[dict[str, Any]]
    ) -> list[QuarantineRecord]:
        """Values the policy could not transform (a date it cannot generalise, a number it cannot band):
        not stored, so quarantined, without the value (it may be personal), with the row they belong to."""
        if not rejected:
            return []
        repeats = {t.xpath: name for name, t in self.raw_schema.tables.items() if t.parent is not None}
        by_id = {s.get("_id"): s for s in submissions if isinstance(s, dict)}
        found: dict[tuple[Any, str], list[str]] = {}  # (submission, question) → keys of rejecting instances
        out = []
        for submission_id, xpath, reason in rejected:
            q = self.raw_schema.questions.get(xpath)
            if xpath in repeats:
                table, column = repeats[xpath], "_key"
            else:
                table, column = (q.table, q.column) if q is not None else (MAIN_TABLE, xpath)
            sid = submission_id if isinstance(submission_id, int) else 0
            row_key = str(sid)
            if q is not None and q.table != MAIN_TABLE and submission_id in by_id:
                # the policy works on the raw JSON and knows no row keys: find the instance again, the n-th
                # one of this submission that the policy refuses for this question (the same walk order)
                keys = found.get((submission_id, xpath))
                if keys is None:
                    keys = found[(submission_id, xpath)] = self._rejecting_rows(by_id[submission_id], q)
                row_key = keys.pop(0) if keys else row_key
            why = f"{reason}; not stored (privacy policy)"
            out.append(QuarantineRecord(sid, table, column, why, None, row_key))
        return out

    def _rejecting_rows(self, submission: dict[str, Any], q: Question) -> list[str]:
        """The `_key`s (`10000042/members[2]`) of the submission's repeat instances whose answer to `q` the
        policy refuses, in the order the policy met them."""
        names = {xp: name for by_version in self.raw_schema.version_repeats.values()
                 for xp, name in by_version.items()}
        data_keys = dict.fromkeys((q.xpath, *q.xpaths))  # its xpath in every version
        out = []
        for row_key, instance in _instances(submission, str(submission.get("_id")), names):
            key = next((k for k in data_keys if k in instance), None)
            if key is not None and rejected_by_policy(self.raw_schema, self.policy, key, instance[key]):
                out.append(row_key)
        return out


def _instances(obj: dict[str, Any], prefix: str, names: dict[str, str]) -> Iterator[tuple[str, dict]]:
    """Every repeat instance under `obj`, depth first in key order, with its `_key` as flattening builds it
    (an instance sent as one object is the first; a non-object item keeps its position)."""
    for key, value in obj.items():
        name = names.get(key)
        if name is None:
            continue
        items = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
        for pos, instance in enumerate(items, start=1):
            if isinstance(instance, dict):
                row_key = f"{prefix}/{name}[{pos}]"
                yield row_key, instance
                yield from _instances(instance, row_key, names)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for one page of work; re-enable it only if it was enabled before.

    Parsing, the privacy policy and flattening build trees of new dicts and lists without reference
    cycles (reference counting frees them), yet every allocation counts towards the cyclic collector,
    whose passes rescan the live heap: measured ≈ 40 % of the privacy step and ≈ 15 % of a sync.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def page_results(body: bytes) -> list[dict[str, Any]]:
    """The submissions in a response body of `/api/v2/assets/{uid}/data/` (a page envelope or a bare list)."""
    data = orjson.loads(body)
    results = data.get("results") if isinstance(data, dict) else data
    if not isinstance(results, list):
        raise TransformError("a page body has no list of results")
    return results


# --- in a worker process (see pipelines/workers.py) ------------------------------------------------------

_transform: PageTransform | None = None


def init_worker(transform: PageTransform) -> None:
    """Pool initializer: keep the form's transform for every page this process will get."""
    global _transform
    _transform = transform


def transform_body(body: bytes) -> TransformedPage:
    """Transform a page's response body (`PageTransform.body`) in a worker process set up by `init_worker`."""
    if _transform is None:
        raise RuntimeError("init_worker was not called in this process")
    return _transform.body(body)
