import pytest

from stratcast.shared.cli import saved_name
from stratcast.tui import validate
from stratcast.tui.render import interval_text


@pytest.mark.parametrize(
    "text",
    ["0 6 * * 1", "*/15 * * * *", "0 22 * * 0", "0 6 * * MON", "0 6 * * mon-fri", "0 0 1,15 jan-jun *", "5/10 * * * 7"],
)
def test_crontab_expressions_are_accepted_and_normalized(text):
    assert validate.cron_expression(f"  {text}  ") == " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0 * * *", "five crontab fields"),
        ("0 25 * * *", "hour field '25': 25 is not between 0 and 23"),
        ("61 * * * *", "minute"),
        ("0 6 * * 8", "weekday"),
        ("0 6 0 * *", "day field"),
        ("0 6 * * funday", "'funday' is not a number or a name"),
        ("*/0 * * * *", "step must be at least 1"),
        ("0 6 * * 5-1", "from low to high"),
        ("0 6 * * mon-5", "one spelling"),
        ("0 6 last * *", "day field"),
        ("0 6 * * 1;2", "weekday field"),
    ],
)
def test_bad_crontab_expressions_say_which_field_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        validate.cron_expression(text)


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("7d", 604800), ("1h30m", 5400), ("2w", 1209600)])
def test_durations_parse_and_print_back_to_the_same_seconds(text, seconds):
    assert validate.duration_seconds(text) == seconds
    assert validate.duration_seconds(interval_text(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5x", "0m", "1h 30m", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration such as"):
        validate.duration_seconds(text)


def test_time_zones_are_iana_names():
    assert validate.time_zone(" Europe/Zurich ") == "Europe/Zurich"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        validate.time_zone("Mars/Olympus")


def test_data_paths_must_be_absolute():
    assert validate.absolute_path(" /data/x.parquet ") == "/data/x.parquet"
    for text in ("", "data/x.parquet", "~/x.parquet"):
        with pytest.raises(ValueError):
            validate.absolute_path(text)


def test_space_file_reads_the_text_and_takes_the_format_from_the_suffix(tmp_path):
    toml, other = tmp_path / "space.toml", tmp_path / "space.json"
    toml.write_text("[nhits]\n")
    other.write_text("{}")
    assert validate.space_file(str(toml)) == ("[nhits]\n", "toml")
    assert validate.space_file(f" {other} ") == ("{}", "json")
    with pytest.raises(ValueError, match=r"missing\.toml.*No such file"):
        validate.space_file(str(tmp_path / "missing.toml"))


def test_from_option_makes_a_command_line_check_raise_value_error():
    assert validate.from_option(saved_name)(" champion ") == "champion"
    with pytest.raises(ValueError, match="is not a valid name"):
        validate.from_option(saved_name)("-x")
