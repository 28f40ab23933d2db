"""Which spans the store keeps: the retention and the 2106 end of DateTime, decided per span."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agentwatch.collector._decode import InvalidRequest
from agentwatch.collector._rows import TIMESTAMP_TYPE
from agentwatch.collector._storable import (
    LAST_DATETIME_S,
    MAX_DAYS_PER_REQUEST,
    NS_PER_DAY,
    NS_PER_S,
    TOO_LATE,
    TOO_OLD,
    StorableWindow,
    rejection_message,
    split_storable,
)

NOW = 1_800_000_000 * NS_PER_S
WINDOW = StorableWindow(retention_days=30)


def table(*times: int) -> pa.Table:
    return pa.table(
        {"Timestamp": pa.array(times, TIMESTAMP_TYPE), "SpanId": [str(t) for t in times]}
    )


def test_spans_inside_the_window_are_all_kept_as_they_are() -> None:
    rows = table(NOW, NOW - 29 * NS_PER_DAY, NOW + NS_PER_DAY)
    split = split_storable(rows, WINDOW, NOW)
    assert split.kept is rows
    assert split.rejected == {}


def test_spans_older_than_the_retention_or_past_2106_are_refused_by_reason() -> None:
    oldest, latest = WINDOW.bounds(NOW)
    rows = table(NOW, oldest - 1, oldest, latest, latest + 1, LAST_DATETIME_S * NS_PER_S)
    split = split_storable(rows, WINDOW, NOW)
    assert split.kept.column("Timestamp").cast(pa.int64()).to_pylist() == [NOW, oldest, latest]
    assert split.rejected == {TOO_OLD: 1, TOO_LATE: 2}
    message = rejection_message(split, rows.num_rows, WINDOW)
    assert message.startswith("3 of 6 spans not stored: 1 older than the 30-day retention")
    assert "2 dated after 2106-01-08" in message  # 2106-02-07 less the 30 days the TTL adds


def test_the_latest_storable_time_leaves_room_for_the_ttl_to_add_the_retention() -> None:
    _, latest = StorableWindow(retention_days=1).bounds(NOW)
    assert latest // NS_PER_S + 86_400 == LAST_DATETIME_S


def test_a_request_of_only_refused_spans_keeps_nothing() -> None:
    split = split_storable(table(NOW - 40 * NS_PER_DAY), WINDOW, NOW)
    assert split.kept.num_rows == 0
    assert split.rejected_count == 1


@pytest.mark.parametrize(
    ("days", "refused"), [(MAX_DAYS_PER_REQUEST, False), (MAX_DAYS_PER_REQUEST + 1, True)]
)
def test_more_days_than_one_insert_may_touch_is_refused(days: int, refused: bool) -> None:
    rows = table(*(NOW + d * NS_PER_DAY for d in range(days)))
    if refused:
        with pytest.raises(InvalidRequest, match=f"{days} different days") as failed:
            split_storable(rows, StorableWindow(retention_days=365), NOW)
        assert failed.value.reason == "too_many_days"
    else:
        assert split_storable(rows, StorableWindow(retention_days=365), NOW).kept.num_rows == days


def test_an_empty_table_is_kept_empty() -> None:
    assert split_storable(table(), WINDOW, NOW).rejected == {}
