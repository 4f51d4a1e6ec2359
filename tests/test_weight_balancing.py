"""Weight balancing: the joint classifier fine-tuned under MaxNorm and weight decay."""

import numpy as np
import pytest
import torch

from skltr import JointClassifier, WeightBalancedClassifier
from skltr._weight_balancing import max_norm_radius, project_rows

CPU = {"device": "cpu", "random_state": 0}


def test_radius_lies_between_the_shortest_and_longest_row():
    coef = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # norms 5, 1, 2
    assert max_norm_radius(coef, 0.1) == pytest.approx(1.4)
    assert max_norm_radius(coef, 0.0) == pytest.approx(1.0)
    assert max_norm_radius(coef, 1.0) == pytest.approx(5.0)


def test_projection_caps_long_rows_and_leaves_short_ones():
    weight = torch.tensor([[3.0, 4.0], [0.6, 0.8], [0.0, 0.0]])
    project_rows(weight, 2.0)
    torch.testing.assert_close(weight, torch.tensor([[1.2, 1.6], [0.6, 0.8], [0, 0.0]]))


def test_fitted_rows_stay_within_the_radius(small_problem):
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    clf = WeightBalancedClassifier(joint=joint, weight_decay=0.0, **CPU).fit(X, y)
    assert clf.radius_ == pytest.approx(max_norm_radius(joint.coef_, 0.1), rel=1e-6)
    norms = np.linalg.norm(clf.coef_, axis=1)
    assert norms.max() <= clf.radius_ * (1 + 1e-5)
    # Without decay, the long (head) rows are the capped ones.
    assert np.isclose(norms, clf.radius_, rtol=1e-4).any()
    np.testing.assert_array_equal(clf.feature_mean_, joint.feature_mean_)


def test_weight_decay_is_chosen_on_held_out_rows(small_problem):
    X, y = small_problem
    grid = [0.0, 0.01, 1.0]
    clf = WeightBalancedClassifier(weight_decay_grid=grid, **CPU).fit(X, y)
    assert clf.chosen_on_ == "cross-fitting"
    np.testing.assert_array_equal(clf.weight_decay_grid_, grid)
    assert clf.weight_decay_scores_.shape == (3,)
    assert clf.weight_decay_ == grid[int(np.argmax(clf.weight_decay_scores_))]
    # A weight decay given is used as it is, with nothing chosen.
    given = WeightBalancedClassifier(weight_decay=0.01, **CPU).fit(X, y)
    assert given.weight_decay_ == 0.01
    assert not hasattr(given, "chosen_on_")
    assert not hasattr(given, "weight_decay_scores_")


def test_held_out_chunks_hold_every_candidates_scores(small_problem, monkeypatch):
    # The held-out rows are scored by every candidate at once, 4 x 4 columns
    # on 6 features: a chunk's size must count the scores, which are wider.
    import skltr._selection

    widths = []
    original = skltr._selection.iter_row_chunks

    def recording(n_rows, n_cols):
        widths.append(n_cols)
        return original(n_rows, n_cols)

    monkeypatch.setattr(skltr._selection, "iter_row_chunks", recording)
    X, y = small_problem
    WeightBalancedClassifier(**CPU).fit(X, y)
    assert widths == [4 * 4, 4 * 4]  # one pass per fold


@pytest.mark.parametrize(
    "params, message",
    [
        ({"weight_decay_grid": []}, "non-empty 1-d sequence"),
        ({"weight_decay_grid": [0.1, np.nan]}, "finite floats"),
        ({"weight_decay_grid": [-0.1, 0.1]}, "must not be negative"),
        ({"weight_decay": -1.0}, "'weight_decay' parameter"),
        ({"weight_decay": "learn"}, "'weight_decay' parameter"),
        ({"radius_fraction": 1.5}, "'radius_fraction' parameter"),
        ({"class_weight": "effective", "beta": 1.0}, "'beta' parameter"),
    ],
)
def test_bad_knobs_say_what_is_wrong(small_problem, params, message):
    X, y = small_problem
    with pytest.raises(ValueError, match=message):
        WeightBalancedClassifier(**params, **CPU).fit(X, y)
