"""Runs schemathesis's command line (`python .ci/run_schemathesis.py run ...`, as `st run ...`).

Hypothesis describes a lambda by parsing its source file with `ast`; on CPython 3.11 before 3.11.8
that parse can fail with "SystemError: AST constructor recursion depth mismatch", which aborts the
operation being tested. A description is only a label, so a failed one becomes a generic label.
"""

import sys

from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _described(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _described

from schemathesis.cli import schemathesis  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "st"
    sys.exit(schemathesis())
