"""The late policy's arithmetic and its sentences (course/late.py), no gradebook: milliseconds."""
import pytest
from traitlets.config import Config

from course.late import LatePolicy
from course.notes import describe_lateness, lateness_sentence

HOUR, DAY = 3600, 24 * 3600


def policy(**settings):
    return LatePolicy(config=Config({"LatePolicy": settings}))


@pytest.mark.parametrize("settings, seconds_late, penalty", [
    ({}, 3 * DAY, 0.0),  # no penalty configured
    ({"penalty_percent": 10}, 1, 1.0),  # one started day
    ({"penalty_percent": 10}, DAY + 1, 2.0),
    ({"penalty_percent": 10, "grace_minutes": 15}, 15 * 60, 0.0),  # within the grace period
    ({"penalty_percent": 10, "grace_minutes": 15}, 15 * 60 + 1, 1.0),  # counted from the due date
    ({"penalty_percent": 2, "period": "hour"}, 5 * HOUR + 1, 1.2),
    ({"penalty_percent": 20, "cap_percent": 50}, 10 * DAY, 5.0),
    ({"penalty_percent": 10, "zero_after_hours": 72}, 72 * HOUR, 3.0),
    ({"penalty_percent": 10, "zero_after_hours": 72}, 72 * HOUR + 1, 10.0),  # past the cutoff
    ({"zero_after_hours": 0}, 1, 10.0),  # zero for any late work
])
def test_the_penalty_follows_the_configured_rule(settings, seconds_late, penalty):
    assert policy(**settings).late_submission_penalty("someone", 10.0, seconds_late) == pytest.approx(penalty)


def test_on_time_and_a_score_of_zero_cost_nothing():
    assert policy(penalty_percent=10).penalty(10.0, 0) == 0.0
    assert policy(penalty_percent=10).penalty(0.0, 5 * DAY) == 0.0


def test_the_feedback_says_how_late_and_what_it_cost():
    rule = policy(penalty_percent=10, grace_minutes=15, zero_after_hours=72).rule()
    assert rule == "15 minutes of grace; 10% of the score per started day late, at most 100%; 0 after 72 hours"
    late = {"due": "2026-10-05T23:59:00+00:00", "submitted": "2026-10-07T02:00:00+00:00",
            "seconds_late": DAY + 2 * HOUR + 60, "penalty": 2.0, "rule": rule}
    assert lateness_sentence(late) == ("Submitted 1 day, 2 hours, 1 minute after the due date (2026-10-05T23:59:00+00:00): "
                                   f"a penalty of 2 points (late policy: {rule}).")
    assert lateness_sentence({**late, "seconds_late": 0}) is None
    assert "graded as on time" in lateness_sentence({**late, "submitted": None, "without_timestamp": "on-time"})
    assert "scores such work 0" in lateness_sentence({**late, "submitted": None, "without_timestamp": "zero"})
    assert describe_lateness(59) == "less than a minute"


def submission(seconds_late, timestamp="2026-10-06 10:00", duedate="2026-10-05 23:59"):
    """What submission_penalty reads of an nbgrader SubmittedAssignment."""
    from types import SimpleNamespace

    return SimpleNamespace(duedate=duedate, timestamp=timestamp, total_seconds_late=seconds_late,
                           student=SimpleNamespace(id="someone"))


@pytest.mark.parametrize("settings, graded, score, penalty", [
    ({"penalty_percent": 10}, submission(DAY + 1), 10.0, 2.0),
    ({"penalty_percent": 10}, submission(0), 10.0, 0.0),  # on time
    ({"penalty_percent": 10}, submission(5 * DAY, duedate=None), 10.0, 0.0),  # no due date: never late
    ({"penalty_percent": 10}, submission(0, timestamp=None), 10.0, 0.0),  # no time, graded as on time
    ({"penalty_percent": 10, "without_timestamp": "zero"}, submission(0, timestamp=None), 7.5, 7.5),
    ({"penalty_percent": 60}, submission(3 * DAY), 10.0, 10.0),  # at most the score
    ({"penalty_percent": 10}, submission(DAY + 1), None, 0.0),  # nothing earned, nothing taken
])
def test_a_submission_s_penalty_comes_from_one_rule(settings, graded, score, penalty):
    assert policy(**settings).submission_penalty(score, graded) == pytest.approx(penalty)


def test_a_subclass_that_overrides_nbgrader_s_hook_is_followed_but_never_adds_points():
    class Generous(LatePolicy):
        def late_submission_penalty(self, student_id, score, total_seconds_late):
            return -5.0

    class Harsh(LatePolicy):
        def late_submission_penalty(self, student_id, score, total_seconds_late):
            return 50.0

    assert Generous().submission_penalty(10.0, submission(DAY)) == 0.0
    assert Harsh().submission_penalty(10.0, submission(DAY)) == 10.0


@pytest.mark.parametrize("setting, value", [
    ("penalty_percent", -10), ("grace_minutes", -1), ("zero_after_hours", -2), ("cap_percent", -5), ("cap_percent", 150),
])
def test_a_setting_that_would_add_points_is_refused_by_name(setting, value):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=f"c.LatePolicy.{setting} = {value}"):
        policy(**{setting: value})
