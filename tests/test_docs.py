"""The documentation site covers the public API."""

import importlib
import re
from pathlib import Path

import pytest
from _estimators import CLASSIFIERS

from skltr import FeatureExtractor

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
PUBLIC_MODULES = [
    "skltr",
    "skltr.metrics",
    "skltr.datasets",
    "skltr.plotting",
    "skltr.models",
    "skltr.distributed",
    "skltr.exceptions",
]


def _documented():
    """The names the API page's autosummary tables list, by module."""
    documented, module = {}, None
    for line in API_PAGE.read_text().splitlines():
        current = re.match(r"\.\. currentmodule:: (\S+)", line)
        if current:
            module = current.group(1)
        elif module and re.match(r"   [A-Za-z_]\w*$", line):
            documented.setdefault(module, set()).add(line.strip())
    return documented


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_has_an_api_page(module):
    public = set(importlib.import_module(module).__all__) - {"__version__"}
    listed = _documented().get(module, set())
    assert public - listed == set(), f"add them to docs/api.rst under {module}"
    assert listed - public == set(), f"not in {module}.__all__"


@pytest.mark.parametrize("classifier", CLASSIFIERS, ids=lambda cls: cls.__name__)
def test_every_classifier_cites_its_method(classifier):
    # The API page is where a user goes from a class to its paper.
    assert "References\n    ----------\n    .. [1]" in classifier.__doc__


GUIDE = API_PAGE.parent / "guide"


@pytest.mark.parametrize(
    "estimator",
    [*CLASSIFIERS, FeatureExtractor],
    ids=lambda cls: cls.__name__,
)
def test_every_estimator_links_to_its_user_guide_page(estimator):
    # From the API page to the method's formulas is one click.
    link = re.search(
        r"Read more in the :ref:`User Guide <([\w-]+)>`", estimator.__doc__
    )
    assert link, "add 'Read more in the :ref:`User Guide <label>`.' to the docstring"
    labels = {
        label
        for page in GUIDE.glob("*.md")
        for label in re.findall(r"^\(([\w-]+)\)=$", page.read_text(), re.MULTILINE)
    }
    assert link.group(1) in labels
