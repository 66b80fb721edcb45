"""Playback times and durations are read the way camera-server users write them."""

from __future__ import annotations

import pytest

from rtsp_kafka_mjpeg.web.timespec import NS, TimeSpecError, parse_duration_s, parse_time_ns, rfc3339

NOW = 1_796_400_000 * NS


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-04T17:30:00Z", 1_796_405_400 * NS),
    ("2026-12-04T18:30:00+01:00", 1_796_405_400 * NS),
    ("2026-12-04T17:30:00.250Z", 1_796_405_400 * NS + 250_000_000),
    ("1796405400", 1_796_405_400 * NS),
    ("1796405400.5", 1_796_405_400 * NS + NS // 2),
    ("-30s", NOW - 30 * NS),
    ("-30", NOW - 30 * NS),
    ("-5m", NOW - 300 * NS),
    ("-1h", NOW - 3600 * NS),
    ("-1.5s", NOW - 1_500_000_000),
    ("-250ms", NOW - 250_000_000),
    ("now", NOW),
])
def test_rfc3339_unix_seconds_and_relative_times_are_read(text: str, expected: int) -> None:
    assert parse_time_ns(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-12-04T17:30:00", "2026-13-04T17:30:00Z", "-5x", "nan",
                                  "-", "+30s", "1e300"])
def test_a_malformed_time_is_one_line_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(TimeSpecError) as err:
        parse_time_ns(text, NOW)
    assert "\n" not in str(err.value) and str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [("10", 10.0), ("2.5", 2.5), ("1500ms", 1.5), ("30s", 30.0),
                                               ("5m", 300.0), ("1h", 3600.0)])
def test_durations_are_seconds_or_carry_a_unit(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "abc", "", "5d"])
def test_a_zero_negative_or_malformed_duration_is_refused(text: str) -> None:
    with pytest.raises(TimeSpecError):
        parse_duration_s(text)


def test_list_times_are_rfc3339_utc_with_milliseconds_and_read_back_exactly() -> None:
    ts = 1_796_405_400 * NS + 123_000_000
    assert rfc3339(ts) == "2026-12-04T17:30:00.123Z"
    assert parse_time_ns(rfc3339(ts), NOW) == ts
