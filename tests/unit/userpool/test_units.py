import pytest

from userpool.submit.units import quantity


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("100", "M", 100),
        ("1.5", "M", 2),
        ("2 GB", "M", 2048),
        ("2g", "M", 2048),
        ("100K", "M", 1),
        ("1500K", "M", 2),
        ("1T", "M", 1048576),
        ("1.5M", "K", 1536),
        ("1G", "K", 1048576),
        ("-1", "M", 0),
        ("RequestCpus * 1024", "M", None),
        ("abc", "M", None),
    ],
)
def test_quantities(value: str, unit: str, expected: int | None) -> None:
    assert quantity(value, unit) == expected
