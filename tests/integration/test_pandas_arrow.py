"""pandas and Arrow data through plain submit: they round-trip exactly; NumPy columns are shared."""

from __future__ import annotations

import numpy as np
import pytest

from tests import _tasks

pd = pytest.importorskip("pandas", reason="needs pandas: pip install zerocopy_executor[integrations]")

TIMEOUT = 60
ROWS = 1 << 18  # a float64 column of 2 MiB, above the default min_nbytes


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.random(ROWS), "b": rng.random(ROWS), "c": np.arange(ROWS)})


def test_dataframe_of_numpy_columns_goes_through_shared_memory(executor):
    """A DataFrame of NumPy columns is echoed back equal, its columns copied into shared memory."""
    df = frame()
    back = executor.submit(_tasks.identity, df).result(TIMEOUT)
    pd.testing.assert_frame_equal(back, df)
    stats = executor.stats()
    assert stats.arrays_copied >= 2  # out and back; pandas may block columns together
    assert stats.bytes_pickled < ROWS * 8


def test_arrow_table_round_trips(executor):
    """A pyarrow Table is echoed back equal (its buffers' path is the core's business)."""
    pa = pytest.importorskip("pyarrow", reason="needs pyarrow: pip install zerocopy_executor[integrations]")
    table = pa.Table.from_pandas(frame(), preserve_index=False)
    back = executor.submit(_tasks.identity, table).result(TIMEOUT)
    assert back.equals(table)


def test_arrow_backed_dataframe_round_trips(executor):
    """A DataFrame with Arrow-backed columns is echoed back equal."""
    pytest.importorskip("pyarrow", reason="needs pyarrow: pip install zerocopy_executor[integrations]")
    df = frame().astype({"a": "float64[pyarrow]"})
    df["s"] = pd.array([f"row {i}" for i in range(ROWS)], dtype="string[pyarrow]")
    back = executor.submit(_tasks.identity, df).result(TIMEOUT)
    pd.testing.assert_frame_equal(back, df)
