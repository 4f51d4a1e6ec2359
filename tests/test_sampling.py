import numpy as np
import pytest

from skltr._sampling import check_sampling, make_sampler

COUNTS = np.array([800, 200, 50, 10])
Y = np.repeat(np.arange(len(COUNTS)), COUNTS)


def _frequencies(sampling, epochs=40, epoch=None):
    sampler = make_sampler(
        sampling, Y, len(COUNTS), epochs=epochs, rng=np.random.default_rng(0)
    )
    drawn = np.concatenate(
        [sampler.epoch_indices(e if epoch is None else epoch) for e in range(epochs)]
    )
    return np.bincount(Y[drawn], minlength=len(COUNTS)) / len(drawn)


@pytest.mark.parametrize(
    "sampling, q", [("instance", 1.0), ("class", 0.0), ("sqrt", 0.5), (0.25, 0.25)]
)
def test_class_frequencies_follow_power_of_counts(sampling, q):
    expected = COUNTS**q / np.sum(COUNTS**q)
    np.testing.assert_allclose(_frequencies(sampling), expected, rtol=0.05, atol=2e-3)


def test_progressive_moves_from_instance_to_class_balanced():
    epochs = 10
    instance = COUNTS / COUNTS.sum()
    balanced = np.full(len(COUNTS), 1 / len(COUNTS))
    for epoch in (0, 5):
        t = epoch / epochs
        expected = (1 - t) * instance + t * balanced
        observed = _frequencies("progressive", epochs=epochs, epoch=epoch)
        np.testing.assert_allclose(observed, expected, rtol=0.05, atol=5e-3)


def test_an_epoch_has_one_index_per_sample_and_instance_sees_each_once():
    for sampling in ("instance", "class", "sqrt", "progressive", 0.3):
        sampler = make_sampler(sampling, Y, 4, epochs=3, rng=np.random.default_rng(0))
        assert len(sampler.epoch_indices(0)) == len(Y)
    sampler = make_sampler("instance", Y, 4, epochs=1, rng=np.random.default_rng(0))
    assert sorted(sampler.epoch_indices(0)) == list(range(len(Y)))


def test_class_aware_sampler_draws_four_consecutive_samples_per_class():
    sampler = make_sampler("class", Y, 4, epochs=1, rng=np.random.default_rng(0))
    classes = Y[sampler.epoch_indices(0)]
    groups = classes[: len(classes) // 4 * 4].reshape(-1, 4)
    assert (groups == groups[:, :1]).all()
    # Classes are visited in shuffled cycles: each cycle of 4 visits covers all.
    visits = groups[:, 0]
    for start in range(0, len(visits) - 4, 4):
        assert sorted(visits[start : start + 4]) == [0, 1, 2, 3]


def test_tail_samples_are_cycled_without_replacement():
    sampler = make_sampler("class", Y, 4, epochs=1, rng=np.random.default_rng(0))
    drawn = sampler.epoch_indices(0)
    tail = drawn[Y[drawn] == 3]
    # Every round of 10 draws of the 10-sample class sees each sample once.
    for start in range(0, len(tail) - 10, 10):
        assert len(set(tail[start : start + 10])) == 10


@pytest.mark.parametrize("bad", ["balanced", "Class", -0.5, float("nan"), None, True])
def test_unknown_sampling_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="sampling"):
        check_sampling(bad)
