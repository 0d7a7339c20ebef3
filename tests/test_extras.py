"""Optional extras: the core imports none of them, and a missing one names its pip install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

OPTIONAL = ("joblib", "threadpoolctl", "dask", "sklearn", "scipy", "pandas", "pyarrow", "emcee")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_core_imports_no_optional_library():
    """Importing zerocopy_executor loads none of the integrations' libraries."""
    done = run(
        f"""
        import sys
        import zerocopy_executor
        print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "missing", "extra"), [("joblib", "joblib", "joblib"), ("dask", "dask", "dask")]
)
def test_missing_extra_names_its_install(module, missing, extra):
    """Without its library, an integration module raises ImportError naming the extra to install."""
    done = run(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if not installed
        try:
            import zerocopy_executor.{module}
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install zerocopy_executor[{extra}]" in done.stdout
