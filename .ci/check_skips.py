"""Fail a CI run whose array-API tests skipped where they should have run.

Usage: check_skips.py JUNIT_XML [--allow REGEX]... [--require REGEX]...
       [--installed]

Reads the JUnit XML that pytest wrote (--junitxml) and prints the counts.

* A skipped test is an array-API skip when its name or its reason mentions
  the Array API, PyTorch or array-api-strict. Each such skip must have a
  reason that matches one of the --allow patterns (regular expressions,
  searched in the reason); any other is an error.
* Each --require pattern must match the name of at least one test that
  passed: the proof that those tests ran, and did not merely not skip.
* --installed: no test may skip for want of SK_TWOLAYER_TEST_INSTALLED=1 (the
  run that tests the installed wheel sets it).
"""

import argparse
import re
import sys
import xml.etree.ElementTree as ET

ARRAY_API = re.compile(r"array.?api|torch|device_section", re.IGNORECASE)
# Never on these machines: other libraries' namespaces and devices that
# scikit-learn's checks try (CuPy, dpnp, CUDA, XPU, Apple's MPS).
ALWAYS_ALLOWED = [
    r"^(cupy|dpnp) is not installed",
    r"requires cuda, which is not available",
    r"no XPU device is available",
    r"Skipping MPS device test",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("junit_xml")
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--require", action="append", default=[])
    parser.add_argument("--installed", action="store_true")
    args = parser.parse_args()
    allowed = [re.compile(p) for p in ALWAYS_ALLOWED + args.allow]

    passed, skipped, failed = [], [], 0
    for case in ET.parse(args.junit_xml).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        skip = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif skip is not None:
            # A skip at collection (a whole module) says "collection
            # skipped" in its message, and why in its text.
            reason = " ".join(filter(None, [skip.get("message"), skip.text]))
            skipped.append((name, reason))
        else:
            passed.append(name)
    print(f"{args.junit_xml}: {len(passed)} passed, {len(skipped)} skipped, "
          f"{failed} failed")

    errors = []
    for name, reason in skipped:
        if ARRAY_API.search(name) or ARRAY_API.search(reason):
            if not any(p.search(reason) for p in allowed):
                errors.append(f"array-API test skipped: {name}: {reason}")
        if args.installed and "SK_TWOLAYER_TEST_INSTALLED" in reason:
            errors.append(f"installed-wheel test skipped: {name}: {reason}")
    for pattern in args.require:
        ran = sum(bool(re.search(pattern, name)) for name in passed)
        print(f"  passed tests matching {pattern!r}: {ran}")
        if not ran:
            errors.append(f"no passed test matches {pattern!r}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"]
                               if len(errors) > 20 else [])
        sys.exit("\n".join(shown))


if __name__ == "__main__":
    main()
