"""Sphinx configuration of the sk-twolayer documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` from the
repository root, after ``pip install ".[docs]"``. The gallery in
``examples/`` is executed on every build.
"""

import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # import the checkout, not an old install

# The GPU example trains under scikit-learn's array_api_dispatch, which needs
# scipy's array API support, read once when scipy is first imported: here.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import sk_twolayer  # noqa: E402

# Figures are drawn off screen, on every machine.
os.environ.setdefault("MPLBACKEND", "Agg")

# The gallery runs in this process. Its data sets are small, where one BLAS
# thread is about as fast as two, and a busy machine makes multithreaded
# BLAS many times slower (threads spin waiting for each other). One thread
# keeps the build time predictable; the examples that report timings say so.
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(limits=1, user_api="blas")

project = "sk-twolayer"
author = "the sk-twolayer developers"
copyright = "2026, the sk-twolayer developers"
release = sk_twolayer.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # Ships MathJax 3 and points mathjax_path at the local copy, so formulas
    # render without reaching a CDN.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "**.codeobj.json"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx -------------------------------------------------------------
# The inventories are not reachable from a machine without internet; links
# to them degrade to plain text. Point SK_TWOLAYER_INTERSPHINX=1 at a
# connected build to get live links to scikit-learn, numpy and scipy.
intersphinx_mapping = {}
if os.environ.get("SK_TWOLAYER_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
    }
# Without the inventories, references to other projects' objects would be
# reported as missing; they are rendered as code instead.
nitpicky = False

# -- sphinx-gallery ----------------------------------------------------------
from sphinx_gallery.sorting import ExplicitOrder  # noqa: E402

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    # examples/quickstart.py is the README's script, not a gallery page.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__\.py|(^|[/\\])quickstart\.py)$",
    "download_all_examples": False,
    "remove_config_comments": True,
    # The order that the gallery's introduction reads in: the quick start
    # first, then the model and its tuning, then deploying, Dask and GPUs.
    # An example not listed here comes last.
    "within_subsection_order": ExplicitOrder([
        "plot_quickstart_digits.py",
        "plot_solvers.py",
        "plot_decision_boundaries.py",
        "plot_grid_search_heatmap.py",
        "plot_early_stopping.py",
        "plot_compare_mlp.py",
        "plot_deploy_onnx.py",
        "plot_dask_data_parallel.py",
        "plot_dask_incremental.py",
        "plot_gpu_where_time_goes.py",
        "*",
    ]),
    "reference_url": {"sk_twolayer": None},
    "doc_module": ("sk_twolayer",),
    "backreferences_dir": "generated/backreferences",
    "show_memory": False,
    "plot_gallery": "True",
    # An example that raises fails the build.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}

# Matplotlib's Agg backend warns when plt.show() is called; that is expected.
warnings.filterwarnings(
    "ignore", category=UserWarning,
    message="Matplotlib is currently using agg, which is a non-GUI backend",
)
warnings.filterwarnings(
    "ignore", category=UserWarning, message=".*FigureCanvasAgg is non-interactive.*"
)

# -- HTML --------------------------------------------------------------------
_TOP_PAGES = ["index", "install", "quickstart", "api", "scaling_out",
              "scaling_out_design",
              "deploying", "benchmarks", "changelog"]
html_theme = "pydata_sphinx_theme"
html_title = f"sk-twolayer {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    # An in-page table of contents on the right, except on the gallery and
    # API pages, which keep their full width for code, figures and signatures.
    "secondary_sidebar_items": {
        **{page: ["page-toc"] for page in _TOP_PAGES},
        "user_guide/*": ["page-toc"],
        # The API pages list their methods in the text; a narrow second
        # column would only truncate the long method names.
        "generated/*": [],
        "auto_examples/*": [],
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # No icons from remote services: the site must work offline.
    "icon_links": [],
}
# Pages without sub-pages need no navigation column on the left.
html_sidebars = {page: [] for page in _TOP_PAGES if page != "api"}
html_show_sourcelink = False
