"""One page of submissions through the privacy policy and flattening: the unit of work a transform worker
process runs (pipelines/workers.py), and what a sync runs in-process for small forms."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from config.privacy import PrivacyPolicy
from transforms.attachments import with_attachment_rows
from transforms.errors import TransformError
from transforms.flatten import to_tables
from transforms.model import MAIN_TABLE, FlatBatch, FormSchema, QuarantineRecord
from transforms.privacy import WithheldQuestion, apply_policy


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
        batch.quarantine[:0] = self._rejected(result.rejected)
        return TransformedPage(with_attachment_rows(batch, result.submissions, self.schema), result.withheld)

    def _rejected(self, rejected: list[tuple[Any, str, str]]) -> list[QuarantineRecord]:
        """Values the policy could not transform (a date it cannot generalise, a number it cannot band):
        not stored, so quarantined, without the value (it may be personal)."""
        if not rejected:
            return []
        repeats = {t.xpath: name for name, t in self.raw_schema.tables.items() if t.parent is not None}
        out = []
        for submission_id, xpath, reason in rejected:
            q = self.raw_schema.questions.get(xpath)
            if xpath in repeats:
                table, column = repeats[xpath], "_key"
            else:
                table, column = (q.table, q.column) if q is not None else (MAIN_TABLE, xpath)
            sid = submission_id if isinstance(submission_id, int) else 0
            # a repeat's row is not known here: the submission's key says where to look
            why = f"{reason}; not stored (privacy policy)"
            out.append(QuarantineRecord(sid, table, column, why, None, str(sid)))
        return out


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
    """Parse a page's response body and transform it (runs in a worker process set up by `init_worker`)."""
    if _transform is None:
        raise RuntimeError("init_worker was not called in this process")
    with cyclic_gc_paused():  # parsing the body allocates as much as transforming it
        return _transform(page_results(body))
