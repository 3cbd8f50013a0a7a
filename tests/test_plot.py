"""The score-over-time plot's parts."""

from reports.plot import unscored_runs


def test_unscored_runs():
    assert unscored_runs([True, False, False, True, False]) == [(1, 2), (4, 1)]
    assert unscored_runs([True, True]) == [] and unscored_runs([]) == []
