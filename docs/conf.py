"""Sphinx configuration of skltr's documentation (``tox -e docs``)."""

import os

# The API pages import skltr, which imports timm: never reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import skltr  # noqa: E402

project = "skltr"
author = "skltr developers"
release = skltr.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
# The runs' output folders hold the tables and figures of results.md, which
# links to them as files; they are not pages of the site.
exclude_patterns = ["_build", "results/*/*", "examples"]

autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Every See Also entry must resolve, every section must parse.
numpydoc_validation_checks = set()
nitpicky = False

# The gallery: every example runs at each build, on the CPU, in seconds.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

html_theme = "pydata_sphinx_theme"
html_title = f"skltr {release}"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_fit_request and its kin on every estimator
    # that takes sample_weight; they are documented by scikit-learn, and
    # their text refers to its user guide.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
