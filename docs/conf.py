"""Sphinx configuration of the lstm_jax documentation (guides in Markdown through MyST, the API from the docstrings).

Build (warnings are errors; ``tests/test_docs.py`` runs the same build):
``python -m sphinx -W -b html docs docs/_build/html``.
"""

project = "lstm_jax"
author = "lstm_jax developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "long-lag/runs", "long-lag/*/runs", "figures"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings state the shapes and types
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: autodoc documents NamedTuple fields once
html_theme = "alabaster"
