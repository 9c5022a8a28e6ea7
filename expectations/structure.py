"""A cheap check, before a page is written, that the flattened data still matches the stored form.

A structural failure stops that form's load (checks on values never do): it means the form was changed
without a redeploy we know of, or the cached version list is stale, so answers would be silently dropped.
A few unknown keys in a few submissions are normal (KoBo bookkeeping, a test record) and only counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transforms.errors import TransformError
from transforms.model import FlatBatch, FormSchema

#: An unknown key counts as "widespread" when at least this share of the batch's submissions have it.
UNKNOWN_SHARE = 0.5
#: The load stops only when at least this many distinct keys are widespread ...
UNKNOWN_MIN_KEYS = 3
#: ... in a batch of at least this many submissions (a single odd record never stops a form).
MIN_SUBMISSIONS = 5


class StructuralError(TransformError):
    """The data no longer matches the stored form; the form's load stops. Names keys, never values."""

    def __init__(self, form: str, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"the data no longer matches the form: {problem}. Check the form's deployed versions in KoBo "
            "(redeploy if it was edited), then run `kobo-etl sync --full` for this form",
            form=form,
        )


@dataclass
class BatchStructure:
    """What `check_batch_structure` found in one batch (names and counts only)."""

    unknown_keys: dict[str, int] = field(default_factory=dict)  # every unknown key -> occurrences
    widespread: list[str] = field(default_factory=list)  # unknown keys in >= UNKNOWN_SHARE of submissions
    extra_tables: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)  # `table.column`


def check_batch_structure(
    batch: FlatBatch,
    schema: FormSchema,
    *,
    share: float = UNKNOWN_SHARE,
    min_keys: int = UNKNOWN_MIN_KEYS,
    min_submissions: int = MIN_SUBMISSIONS,
) -> BatchStructure:
    """Compare a flattened batch with the stored form schema before it is written.

    Raises:
        StructuralError: the batch has a table or column the stored schema lacks, or at least `min_keys`
            distinct answers the deployed versions do not define, each in at least `share` of the batch's
            submissions (and the batch has at least `min_submissions` submissions).

    Returns:
        The findings that were tolerated (a handful of unknown keys), for the log.
    """
    found = BatchStructure(unknown_keys=dict(batch.unknown_keys))
    for name, table in batch.tables.items():
        spec = schema.tables.get(name)
        if spec is None:
            found.extra_tables.append(name)
            continue
        known = {c.name for c in spec.columns}
        found.extra_columns += [f"{name}.{c}" for c in table.column_names if c not in known]
    n = len(batch.submission_ids)
    if n:
        # a key inside a repeat counts once per instance, so its count may exceed n: still "widespread"
        found.widespread = sorted(k for k, c in batch.unknown_keys.items() if c >= share * n)
    if found.extra_tables or found.extra_columns:
        names = sorted(found.extra_tables) + sorted(found.extra_columns)
        raise StructuralError(schema.slug, f"tables/columns not in the stored schema: {_few(names)}")
    if n >= min_submissions and len(found.widespread) >= min_keys:
        raise StructuralError(
            schema.slug,
            f"{len(found.widespread)} answers that no deployed version defines appear in most of {n} "
            f"submissions ({_few(found.widespread)})",
        )
    return found


def _few(names: list[str], limit: int = 5) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")
