"""Form-aware transforms: the form schema across versions, flattening to typed Arrow tables, labels."""

from transforms.attachments import to_attachment_table, with_attachment_rows, with_attachments_table
from transforms.flatten import to_tables
from transforms.model import (
    MAIN_TABLE,
    Choice,
    ColumnSpec,
    FlatBatch,
    FormSchema,
    QuarantineRecord,
    Question,
    TableSchema,
)
from transforms.schema import to_form_schema, to_label_tables

__all__ = [
    "MAIN_TABLE",
    "Choice",
    "ColumnSpec",
    "FlatBatch",
    "FormSchema",
    "QuarantineRecord",
    "Question",
    "TableSchema",
    "to_form_schema",
    "to_label_tables",
    "to_attachment_table",
    "to_tables",
    "with_attachment_rows",
    "with_attachments_table",
]
