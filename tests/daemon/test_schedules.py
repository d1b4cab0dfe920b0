import asyncio
import time

import pytest

from stratcast.daemon.schedules import ScheduleError, Timetable, first_fire, make_trigger
from stratcast.shared.protocol import JobSpec, Placement, ScheduleInfo


def schedule(**kw) -> ScheduleInfo:
    base = {"id": 1, "name": "s", "job": JobSpec(data="/x.parquet"), "placement": Placement(), "every_s": 2}
    return ScheduleInfo(**{**base, **kw})


def test_cron_fires_in_its_time_zone():
    trigger = make_trigger("0 22 * * 0", None, "Europe/London")
    # Monday 2026-11-23 12:00 UTC -> Sunday 2026-11-29 22:00 London (UTC+0 in winter)
    nxt = first_fire(trigger, 1795435200.0)
    assert time.strftime("%Y-%m-%d %H:%M %a", time.gmtime(nxt)) == "2026-11-29 22:00 Sun"
    summer = first_fire(trigger, 1782820800.0)  # 2026-06-30: London is UTC+1, so 21:00 UTC
    assert time.strftime("%H:%M %a", time.gmtime(summer)) == "21:00 Sun"


@pytest.mark.parametrize(
    ("cron", "every", "tz", "match"),
    [
        (None, None, "UTC", "exactly one"),
        ("0 22 * * 0", 60, "UTC", "exactly one"),
        ("0 25 * * *", None, "UTC", "bad cron"),
        (None, 0, "UTC", "at least 1 second"),
        (None, 60, "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_timetables_are_refused_with_the_reason(cron, every, tz, match):
    with pytest.raises(ScheduleError, match=match):
        make_trigger(cron, every, tz)


def test_times_missed_while_down_fire_once_and_paused_schedules_never():
    fired: list[int] = []

    async def fire(schedule_id: int) -> None:
        fired.append(schedule_id)

    async def main() -> None:
        table = Timetable(fire)
        table.start()
        table.put(schedule(id=1, next_run=time.time() - 11))  # five 2-second periods missed
        table.put(schedule(id=2, next_run=time.time() - 11, paused=True))
        await asyncio.sleep(0.5)
        nxt = table.next_run(1)
        assert nxt is not None and nxt > time.time()
        assert table.next_run(2) is None
        table.shutdown()

    asyncio.run(main())
    assert fired == [1]


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0-1", "sun,mon"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon,3", "mon,wed"),
        ("*", "*"),
    ],
)
def test_crontab_weekdays_count_from_sunday(field, names):
    from stratcast.daemon.schedules import _weekdays

    assert _weekdays(field) == names
    make_trigger(f"0 22 * * {field}", None, "UTC")  # APScheduler accepts the translation
