"""Class-dependent sampling (Decoupling paper, Eq. 1 and 2).

The probability of drawing class j is p_j = n_j^q / sum_i n_i^q:
instance-balanced (q = 1), class-balanced (q = 0), square-root (q = 1/2), and
progressively-balanced, which slides from q = 1 to q = 0 over the epochs.
Every sampler returns ``n_samples`` indices per epoch.
"""

from numbers import Real

import numpy as np

SAMPLING_OPTIONS = ("instance", "class", "sqrt", "progressive")

# The reference class-aware sampler draws this many consecutive samples of a
# class each time it visits it.
_SAMPLES_PER_CLASS_VISIT = 4


def check_sampling(sampling):
    """Validate a ``sampling`` parameter; return it unchanged."""
    if isinstance(sampling, str):
        if sampling not in SAMPLING_OPTIONS:
            raise ValueError(
                f"sampling={sampling!r} is not a sampling strategy; use one of "
                f"{', '.join(map(repr, SAMPLING_OPTIONS))} or a float q >= 0 "
                "(p_j proportional to n_j^q)."
            )
    elif not isinstance(sampling, Real) or isinstance(sampling, bool):
        raise ValueError(
            f"sampling must be one of {', '.join(map(repr, SAMPLING_OPTIONS))} or a "
            f"float q >= 0; got {sampling!r}."
        )
    elif not np.isfinite(sampling) or sampling < 0:
        raise ValueError(
            f"sampling as a power q must be finite and >= 0; got {sampling}."
        )
    return sampling


def final_power(sampling):
    """The power q of p_j proportional to n_j^q that ``sampling`` trains at last.

    1 instance-balanced, 0 class-balanced, 1/2 square-root, 0 for the
    progressive sampler, which ends class-balanced; a float is q itself.
    The class prior a classifier trained this way learns is proportional to
    n_j^q.
    """
    check_sampling(sampling)
    powers = {"instance": 1.0, "class": 0.0, "sqrt": 0.5, "progressive": 0.0}
    return powers[sampling] if isinstance(sampling, str) else float(sampling)


def make_sampler(sampling, y, n_classes, *, epochs, rng):
    """The sampler named by ``sampling`` over the encoded labels ``y``.

    Parameters
    ----------
    sampling : {"instance", "class", "sqrt", "progressive"} or float
        A float is the power q of p_j proportional to n_j^q.
    y : ndarray of shape (n_samples,)
        Encoded labels, 0 to n_classes - 1.
    n_classes : int
    epochs : int
        Length of the schedule of the progressive sampler.
    rng : numpy.random.Generator

    Returns
    -------
    sampler : object with ``epoch_indices(epoch)``
    """
    check_sampling(sampling)
    if sampling == "instance":
        return InstanceSampler(len(y), rng)
    if sampling == "class":
        return ClassAwareSampler(y, n_classes, rng)
    if sampling == "sqrt":
        return PowerSampler(y, n_classes, rng, q=0.5)
    if sampling == "progressive":
        return ProgressiveSampler(y, n_classes, rng, epochs=epochs)
    return PowerSampler(y, n_classes, rng, q=float(sampling))


class InstanceSampler:
    """Natural sampling: each epoch is a fresh permutation of the samples."""

    def __init__(self, n_samples, rng):
        self.n_samples = n_samples
        self.rng = rng

    def epoch_indices(self, epoch):
        return self.rng.permutation(self.n_samples)


class _ClassCycles:
    """A shuffled cyclic iterator over the samples of each class.

    Each class's samples are drawn in a random order, without replacement until
    all have been seen, then reshuffled; the reference implementation's
    ``RandomCycleIter``.
    """

    def __init__(self, y, n_classes, rng):
        self.rng = rng
        self.members = [np.flatnonzero(y == j) for j in range(n_classes)]
        self.orders = [rng.permutation(m) for m in self.members]
        self.positions = np.zeros(n_classes, dtype=np.int64)

    def take(self, j, count):
        """The next ``count`` samples of class ``j``, reshuffling as it wraps."""
        order, position = self.orders[j], self.positions[j]
        rest = order[position : position + count]
        if len(rest) == count:
            self.positions[j] = position + count
            return rest
        # Wrap around as many times as needed with fresh shuffles at once.
        members = self.members[j]
        n_shuffles = -(-(count - len(rest)) // len(members))
        shuffles = self.rng.permuted(np.tile(members, (n_shuffles, 1)), axis=1)
        self.orders[j] = shuffles[-1]
        self.positions[j] = (count - len(rest)) - (n_shuffles - 1) * len(members)
        return np.concatenate([rest, shuffles.ravel()])[:count]

    def draw(self, classes):
        """One sample of each class in ``classes``, in that order."""
        out = np.empty(len(classes), dtype=np.int64)
        # Grouping by one stable sort keeps this O(n log n) with many classes.
        by_class = np.argsort(classes, kind="stable")
        counts = np.bincount(classes, minlength=len(self.members))
        ends = np.cumsum(counts)
        for j in np.flatnonzero(counts):
            out[by_class[ends[j] - counts[j] : ends[j]]] = self.take(j, counts[j])
        return out


class ClassAwareSampler:
    """Class-balanced sampling as in the reference implementation (q = 0).

    Classes are visited in a shuffled cyclic order; each visit draws 4
    consecutive samples of the class from its own shuffled cyclic iterator.
    """

    def __init__(self, y, n_classes, rng):
        self.n_samples = len(y)
        self.n_classes = n_classes
        self.rng = rng
        self.cycles = _ClassCycles(y, n_classes, rng)
        # Classes without a sample are never visited (held-out rows may lack
        # some classes).
        self.present = np.flatnonzero(np.bincount(y, minlength=n_classes))
        self.class_order = np.empty(0, dtype=np.int64)

    def _next_classes(self, count):
        while len(self.class_order) < count:
            self.class_order = np.concatenate(
                [self.class_order, self.rng.permutation(self.present)]
            )
        visited, self.class_order = self.class_order[:count], self.class_order[count:]
        return visited

    def epoch_indices(self, epoch):
        n_visits = -(-self.n_samples // _SAMPLES_PER_CLASS_VISIT)
        visits = self._next_classes(n_visits)
        per_sample = np.repeat(visits, _SAMPLES_PER_CLASS_VISIT)
        return self.cycles.draw(per_sample)[: self.n_samples]


class PowerSampler:
    """Draw classes with p_j proportional to n_j^q, then a sample of each."""

    def __init__(self, y, n_classes, rng, *, q):
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        self.n_samples = len(y)
        self.rng = rng
        self.probabilities = _power_probabilities(counts, q)
        self.cycles = _ClassCycles(y, n_classes, rng)

    def epoch_indices(self, epoch):
        return _draw(self, self.probabilities)


class ProgressiveSampler:
    """p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB, t the epoch, T the epochs."""

    def __init__(self, y, n_classes, rng, *, epochs):
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        self.n_samples = len(y)
        self.rng = rng
        self.epochs = max(1, epochs)
        self.instance = _power_probabilities(counts, 1.0)
        self.balanced = _power_probabilities(counts, 0.0)
        self.cycles = _ClassCycles(y, n_classes, rng)

    def probabilities(self, epoch):
        t = epoch / self.epochs
        return (1.0 - t) * self.instance + t * self.balanced

    def epoch_indices(self, epoch):
        return _draw(self, self.probabilities(epoch))


def _power_probabilities(counts, q):
    weights = np.where(counts > 0, counts**q, 0.0)
    return weights / weights.sum()


def _draw(sampler, probabilities):
    classes = sampler.rng.choice(
        len(probabilities), size=sampler.n_samples, p=probabilities
    )
    return sampler.cycles.draw(classes)
