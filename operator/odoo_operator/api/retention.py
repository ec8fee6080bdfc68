"""Which backup artifacts to keep: the keep-last / daily / weekly / monthly rule of restic and borg.

Pure: no I/O, no clock. Buckets are UTC calendar days, ISO weeks and calendar months, and a bucket
only counts when it holds an artifact ("the 7 most recent days that have a backup"), so a few days
without backups never empty the set.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Retention:
    """Odoo's SLA by default: 7 daily, 4 weekly, 3 monthly backups."""

    keep_last: int = 0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 3


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day(moment: datetime) -> Hashable:
    return moment.date()


def _iso_week(moment: datetime) -> Hashable:
    year, week, _ = moment.isocalendar()
    return year, week


def _month(moment: datetime) -> Hashable:
    return moment.year, moment.month


def select_keep(
    artifacts: Sequence[tuple[str, datetime]],
    keep_last: int = 0,
    keep_daily: int = 7,
    keep_weekly: int = 4,
    keep_monthly: int = 3,
    now: datetime | None = None,
) -> set[str]:
    """The ids to keep among `(id, time)` pairs; every other id may be deleted.

    The newest artifact is always kept. Artifacts dated after `now` (a clock that ran ahead) are
    kept and take no bucket: nothing can be said about them, and they must not push out real ones.
    """
    if not artifacts:
        return set()
    newest_first = sorted(((_utc(moment), ident) for ident, moment in artifacts), reverse=True)
    keep = {newest_first[0][1]}
    if now is not None:
        cutoff = _utc(now)
        keep.update(ident for moment, ident in newest_first if moment > cutoff)
        newest_first = [(moment, ident) for moment, ident in newest_first if moment <= cutoff]
    keep.update(ident for _, ident in newest_first[:max(keep_last, 0)])
    rules: list[tuple[int, Callable[[datetime], Hashable]]] = [
        (keep_daily, _day), (keep_weekly, _iso_week), (keep_monthly, _month),
    ]
    for count, bucket_of in rules:
        seen: set[Hashable] = set()
        for moment, ident in newest_first:
            if len(seen) >= count:
                break
            bucket = bucket_of(moment)
            if bucket not in seen:
                seen.add(bucket)
                keep.add(ident)
    return keep
