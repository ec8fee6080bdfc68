"""Retention: the keep-last / daily / weekly / monthly rule, on simulated calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from odoo_operator.api.retention import Retention, select_keep


def at(day: date, hour: int = 2) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ident(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def daily(first: date, last: date, hour: int = 2) -> list[tuple[str, datetime]]:
    days = (last - first).days + 1
    return [(ident(at(first + timedelta(days=n), hour)), at(first + timedelta(days=n), hour)) for n in range(days)]


def ids(*moments: datetime) -> set[str]:
    return {ident(m) for m in moments}


def test_a_month_of_daily_backups_with_extra_manual_ones() -> None:
    jan = [date(2024, 1, d) for d in range(1, 32)]
    artifacts = daily(jan[0], jan[-1])
    extras = [at(date(2024, 1, 30), 15), at(date(2024, 1, 14), 18), at(date(2024, 1, 3), 10)]
    artifacts += [(ident(m), m) for m in extras]

    keep = select_keep(artifacts, now=datetime(2024, 1, 31, 12, tzinfo=UTC))

    # 2024-01-01 is a Monday: ISO weeks are 1-7, 8-14, 15-21, 22-28, 29-31.
    expected = ids(
        at(date(2024, 1, 31)), at(date(2024, 1, 30), 15), *(at(date(2024, 1, d)) for d in (29, 28, 27, 26, 25)),
        at(date(2024, 1, 21)), at(date(2024, 1, 14), 18),  # newest of weeks 3 and 2 (week 4's is the 28th)
    )
    assert keep == expected
    assert ident(at(date(2024, 1, 30))) not in keep  # the day's older backup goes


def test_a_year_of_daily_backups_keeps_the_sla() -> None:
    artifacts = daily(date(2023, 1, 1), date(2023, 12, 31))

    keep = select_keep(artifacts, now=datetime(2023, 12, 31, 23, tzinfo=UTC))

    # 2023-12-31 is a Sunday, the end of ISO week 52 (Dec 25-31).
    expected = ids(*(at(date(2023, 12, d)) for d in range(25, 32)),
                   at(date(2023, 12, 24)), at(date(2023, 12, 17)), at(date(2023, 12, 10)),  # weeks 51, 50, 49
                   at(date(2023, 11, 30)), at(date(2023, 10, 31)))  # months
    assert keep == expected
    assert len(keep) == 12


def test_days_without_backups_do_not_use_up_the_quota() -> None:
    days = [date(2024, 3, d) for d in (1, 5, 10, 20)]
    artifacts = [(ident(at(d)), at(d)) for d in days]
    keep = select_keep(artifacts, keep_daily=3, keep_weekly=0, keep_monthly=0, now=at(date(2024, 3, 25)))
    assert keep == ids(at(date(2024, 3, 20)), at(date(2024, 3, 10)), at(date(2024, 3, 5)))


def test_keep_last_alone() -> None:
    artifacts = [(ident(m), m) for m in (at(date(2024, 5, 1), h) for h in range(10))]
    keep = select_keep(artifacts, keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0,
                       now=at(date(2024, 5, 2)))
    assert keep == ids(at(date(2024, 5, 1), 9), at(date(2024, 5, 1), 8), at(date(2024, 5, 1), 7))


def test_all_zero_keeps_just_the_newest() -> None:
    artifacts = daily(date(2024, 1, 1), date(2024, 2, 15))
    keep = select_keep(artifacts, 0, 0, 0, 0, now=at(date(2024, 2, 16)))
    assert keep == ids(at(date(2024, 2, 15)))


def test_the_newest_is_kept_whatever_the_input_order() -> None:
    artifacts = list(reversed(daily(date(2024, 1, 1), date(2024, 1, 10))))
    artifacts.insert(3, (ident(at(date(2024, 1, 10), 23)), at(date(2024, 1, 10), 23)))
    assert ident(at(date(2024, 1, 10), 23)) in select_keep(artifacts, 0, 0, 0, 0, now=at(date(2024, 1, 11)))
    assert select_keep([], now=at(date(2024, 1, 11))) == set()


def test_artifacts_from_a_clock_that_ran_ahead_are_kept_and_take_no_bucket() -> None:
    now = datetime(2024, 1, 31, 12, tzinfo=UTC)
    artifacts = daily(date(2024, 1, 25), date(2024, 1, 31))
    future = at(date(2024, 2, 3))
    artifacts.append((ident(future), future))
    keep = select_keep(artifacts, keep_daily=2, keep_weekly=0, keep_monthly=0, now=now)
    assert keep == ids(future, at(date(2024, 1, 31)), at(date(2024, 1, 30)))


def test_naive_and_other_timezones_are_read_as_utc_days() -> None:
    paris = datetime(2024, 1, 2, 0, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    late = datetime(2024, 1, 1, 23, 0)  # naive: UTC
    artifacts = [("late", late), ("paris", paris), ("early", datetime(2024, 1, 1, 1, 0, tzinfo=UTC))]
    keep = select_keep(artifacts, keep_daily=5, keep_weekly=0, keep_monthly=0, now=datetime(2024, 1, 3, tzinfo=UTC))
    assert keep == {"paris", "late"}  # paris is 2024-01-02 00:30 UTC, its own day; "early" loses to "late"


def test_defaults_are_odoo_sla() -> None:
    assert Retention() == Retention(keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=3)
