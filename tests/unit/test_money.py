from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.money import MoneyError, Rounding, quantize, to_decimal


@pytest.mark.parametrize(
    ("value", "increment", "rounding", "expected"),
    [
        ("1.239", "0.01", Rounding.FLOOR, "1.23"),
        ("1.231", "0.01", Rounding.CEILING, "1.24"),
        ("1.235", "0.01", Rounding.HALF_EVEN, "1.24"),
        ("1.245", "0.01", Rounding.HALF_EVEN, "1.24"),
        ("-1.231", "0.01", Rounding.FLOOR, "-1.24"),
        ("1.5", "0.01", Rounding.FLOOR, "1.50"),
        ("0.000123456789", "0.00000001", Rounding.FLOOR, "0.00012345"),
        ("10.3", "0.25", Rounding.FLOOR, "10.25"),
        ("10.3", "0.25", Rounding.CEILING, "10.50"),
        ("12345678901234567890.123456789", "0.00000001", Rounding.FLOOR,
         "12345678901234567890.12345678"),
    ],
)  # fmt: skip
def test_quantize_rounds_in_the_stated_direction(value, increment, rounding, expected):
    result = quantize(Decimal(value), Decimal(increment), rounding)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_quantize_is_exact_however_many_digits():
    just_below_one = Decimal("0." + "9" * 70)
    assert quantize(just_below_one, Decimal(1), Rounding.FLOOR) == 0
    assert quantize(just_below_one, Decimal(1), Rounding.CEILING) == 1
    assert quantize(Decimal("-2.5"), Decimal(1), Rounding.HALF_EVEN) == -2
    assert quantize(Decimal("-3.5"), Decimal(1), Rounding.HALF_EVEN) == -4


def test_quantize_refuses_floats():
    with pytest.raises(MoneyError):
        quantize(0.1, Decimal("0.01"), Rounding.FLOOR)  # type: ignore[arg-type]


@pytest.mark.parametrize("increment", ["0", "-0.01", "NaN", "Infinity"])
def test_quantize_refuses_a_nonsense_increment(increment):
    with pytest.raises(MoneyError):
        quantize(Decimal("1"), Decimal(increment), Rounding.FLOOR)


increments = st.sampled_from(["0.01", "0.00000001", "0.25", "1", "0.5", "0.0001"]).map(Decimal)
values = st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, places=10)


@given(values, increments)
def test_quantized_values_are_multiples_within_one_increment(value, increment):
    low = quantize(value, increment, Rounding.FLOOR)
    high = quantize(value, increment, Rounding.CEILING)
    nearest = quantize(value, increment, Rounding.HALF_EVEN)
    assert low <= value <= high
    assert high - low in (0, increment)
    assert low % increment == 0 and high % increment == 0
    assert abs(nearest - value) <= increment / 2


powers = st.integers(min_value=-10, max_value=3).map(lambda e: Decimal(1).scaleb(e))


@given(values, powers, st.sampled_from(list(Rounding)))
def test_a_power_of_ten_rounds_as_the_general_path_does(value, increment, rounding):
    # "10" times a tenth of the increment is the same step spelled with two digits, which
    # takes the general path; both must agree, to the exponent
    spelled = Decimal(10).scaleb(int(increment.as_tuple().exponent) - 1)
    fast = quantize(value, increment, rounding)
    general = quantize(value, spelled, rounding).quantize(increment)
    assert fast == general
    assert fast.as_tuple().exponent == increment.as_tuple().exponent


@pytest.mark.parametrize("value", [0.1, True, float("nan"), "abc", "NaN", "Infinity", None, []])
def test_to_decimal_refuses_what_is_not_money(value):
    with pytest.raises(MoneyError):
        to_decimal(value)


def test_to_decimal_keeps_the_exact_text():
    assert str(to_decimal(" 0.00010 ")) == "0.00010"
    assert to_decimal(5) == Decimal(5)
    assert to_decimal(Decimal("2.5")) == Decimal("2.5")
