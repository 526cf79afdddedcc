import os

# scikit-learn's array-API estimator check runs only when scipy was imported
# with array-API support on; set it before anything imports scipy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
