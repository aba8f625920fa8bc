"""API shapes of the registry feature."""

from __future__ import annotations

import datetime as dt
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching the query, over all pages.")
    offset: int
    limit: int


class BatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    file_name: str
    file_sha256: str
    file_bytes: int
    format: str
    encoding: str | None
    delimiter: str | None
    rows_read: int
    facts: int
    rejections: int
    duplicates: int
    received_at: dt.datetime
    loaded_at: dt.datetime


class BatchReportOut(BatchOut):
    reconciles: bool = Field(description="rows_read = facts + rejections + duplicates")
    rejection_reasons: dict[str, int] = Field(description="How many rejections cite each reason")


class RejectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: int = Field(description="Line in the file (CSV header = 1) or row number (Parquet)")
    source_record_id: str | None
    reasons: list[str] = Field(description="Reason codes, <check>:<column>")
    explanations: list[str] = Field(description="The reasons in words, in the requested language")
    raw: str


class SourceOut(BaseModel):
    code: str
    names: dict[str, str]
    owner: dict[str, str]
    cadence_days: int
    columns: list[dict[str, object]]
