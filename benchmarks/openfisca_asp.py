"""Kazakhstan's targeted social assistance (АСП) as an OpenFisca model: the peer engine in
``rules_bench.py``.

Written with openfisca-core's public API only (``build_entity``, ``Variable``,
``TaxBenefitSystem``, ``ParameterNode``, ``SimulationBuilder``), the way a country package
would write it, so that the benchmark measures OpenFisca as people use it.

Modelling choices:

- Entities: ``person`` and ``household`` (one role, ``member``). Every household gets
  ``members`` persons (at least one), so the simulation carries a real person/household
  structure of ~4.5 persons per household, although the АСП rule itself only reads
  household variables.
- Variables are monthly (``DateUnit.MONTH``); the period is the reference month, e.g.
  ``2026-10``. Value types are OpenFisca's defaults on purpose: ``float`` variables are
  float32, ``int`` variables int32. Whether float32 stays exact to the tiyn is what the
  benchmark checks, so nothing here is widened to float64.
- ``per_capita_income`` is set in tenge (tiyn / 100, divided in float64 and then stored by
  OpenFisca as float32, i.e. the nearest float32 to the exact value).
- Parameters are dated OpenFisca parameters built from a dict: прожиточный минимум
  (46,228 tenge from 2025-01-01, 50,851 from 2026-01-01), the 0.70 and 0.35 shares, and
  ``median_per_capita_income``. The median is a parameter rather than a household input
  because it is one published figure per month for the whole population, exactly what
  OpenFisca parameters are for; an input would cost an N-long float32 array and would round
  the median to float32 before it is used. ``run_openfisca`` dates it to the reference month
  only (``Parameter.update``), so a month without a median fails instead of reusing another
  month's.
- ``poverty_line`` is a household variable whose formula returns a scalar (OpenFisca fills
  the array): max(0.70 × минимум, 0.35 × median), each rounded half up to whole tenge. The
  two products are scalars, so they are computed exactly with ``Decimal`` from the
  parameters' decimal values; floating-point error is left to the per-household arithmetic,
  which is the part being measured.
- ``amount``: ``(poverty_line - per_capita_income) * members`` where eligible. The
  subtraction is float32; numpy promotes float32 × int32 to float64, and OpenFisca casts the
  formula's result back to the variable's float32. The rounding errors therefore come from
  the float32 income and the final float32 cast (spacing 1/32 tenge above 262,144 tenge).

    python benchmarks/openfisca_asp.py                      # 100,000 households
    python benchmarks/openfisca_asp.py --households 1000000
"""

from __future__ import annotations

import argparse
import functools
import resource
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy
from numpy.typing import NDArray
from openfisca_core import periods
from openfisca_core.entities import build_entity
from openfisca_core.parameters import ParameterNode
from openfisca_core.periods import DateUnit, Period
from openfisca_core.populations import GroupPopulation
from openfisca_core.simulations import SimulationBuilder
from openfisca_core.taxbenefitsystems import TaxBenefitSystem
from openfisca_core.variables import Variable

Person = build_entity(
    key="person",
    plural="persons",
    label="A person",
    is_person=True,
)
Household = build_entity(
    key="household",
    plural="households",
    label="A household applying for АСП",
    roles=[{"key": "member", "plural": "members", "label": "Member"}],
)

PARAMETERS: dict[str, Any] = {
    "asp": {
        "description": "Адресная социальная помощь (АСП)",
        "subsistence_minimum": {
            "description": "Прожиточный минимум, tenge per person per month",
            "unit": "currency-KZT",
            "values": {"2025-01-01": 46228, "2026-01-01": 50851},
        },
        "poverty_line_share": {
            "description": "Poverty line as a share of the прожиточный минимум",
            "unit": "/1",
            "values": {"2025-01-01": 0.70},
        },
        "median_income_share": {
            "description": "Poverty line as a share of the median per-capita income",
            "unit": "/1",
            "values": {"2025-01-01": 0.35},
        },
        "median_per_capita_income": {
            "description": "Median per-capita income of the population, tenge per month; "
            "set for each reference month by run_openfisca",
            "unit": "currency-KZT",
            "values": {"2025-01-01": None},
        },
    }
}


class members(Variable):
    value_type = int
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Number of household members"


class per_capita_income(Variable):
    value_type = float
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Average monthly income per member (СДД), tenge"


class idle_able_bodied_adults(Variable):
    value_type = int
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Able-bodied adults neither working nor in employment measures"


class non_mortgage_loans(Variable):
    value_type = int
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Open loans other than mortgages"


def _half_up(share: float, value: float) -> int:
    product = Decimal(repr(share)) * Decimal(repr(value))
    return int(product.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class poverty_line(Variable):
    value_type = float
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Черта бедности, tenge per person per month"

    def formula(household: GroupPopulation, period: Period, parameters: Any) -> int:
        asp = parameters(period).asp
        return max(
            _half_up(asp.poverty_line_share, asp.subsistence_minimum),
            _half_up(asp.median_income_share, asp.median_per_capita_income),
        )


class eligible(Variable):
    value_type = bool
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Eligible for АСП"

    def formula(household: GroupPopulation, period: Period) -> NDArray[numpy.bool_]:
        poor = household("per_capita_income", period) <= household("poverty_line", period)
        able_are_working = household("idle_able_bodied_adults", period) == 0
        no_loans = household("non_mortgage_loans", period) == 0
        return poor & able_are_working & no_loans


class amount(Variable):
    value_type = float
    entity = Household
    definition_period = DateUnit.MONTH
    label = "Monthly АСП for the household, tenge"

    def formula(household: GroupPopulation, period: Period) -> NDArray[numpy.floating[Any]]:
        gap = household("poverty_line", period) - household("per_capita_income", period)
        return numpy.where(household("eligible", period), gap * household("members", period), 0)


VARIABLES = (
    members,
    per_capita_income,
    idle_able_bodied_adults,
    non_mortgage_loans,
    poverty_line,
    eligible,
    amount,
)
INPUTS = (
    "members",
    "idle_able_bodied_adults",
    "non_mortgage_loans",
)


@functools.cache
def asp_system() -> TaxBenefitSystem:
    """The tax-benefit system, built once per process and shared by every run."""
    system = TaxBenefitSystem([Person, Household])
    system.add_variables(*VARIABLES)
    system.parameters = ParameterNode("", data=PARAMETERS)
    return system


def _set_median(system: TaxBenefitSystem, month: Period, median_tenge: float) -> None:
    system.parameters.asp.median_per_capita_income.update(period=month, value=median_tenge)
    # get_parameters_at_instant is memoised per (system, instant) with functools.lru_cache:
    # without this a second run for the same month would still see the first run's median.
    TaxBenefitSystem.get_parameters_at_instant.cache_clear()


def run_openfisca(
    arrays: dict[str, NDArray[Any]], month: str, median_per_capita_income_tenge: float
) -> dict[str, Any]:
    """Build an OpenFisca simulation from household arrays and calculate АСП for ``month``.

    ``arrays`` holds equal-length household arrays: ``members``, ``per_capita_income_tiyn``
    (exact int64 tiyn), ``idle_able_bodied_adults``, ``non_mortgage_loans``. Everything from
    the arrays to the results is timed; building the system itself (``asp_system``) is not.
    """
    system = asp_system()
    period = periods.period(month)

    started = time.perf_counter()
    _set_median(system, period, median_per_capita_income_tenge)
    households = len(arrays["members"])
    persons_per_household = numpy.maximum(arrays["members"], 1)
    household_of_person = numpy.repeat(numpy.arange(households), persons_per_household)

    builder = SimulationBuilder()
    builder.create_entities(system)
    builder.declare_person_entity("person", numpy.arange(len(household_of_person)))
    household_population = builder.declare_entity("household", numpy.arange(households))
    builder.join_with_persons(
        household_population,
        household_of_person,
        numpy.zeros(len(household_of_person), dtype=numpy.int64),  # every person: "member"
    )
    simulation = builder.build(system)
    for name in INPUTS:
        simulation.set_input(name, period, arrays[name])
    simulation.set_input("per_capita_income", period, arrays["per_capita_income_tiyn"] / 100)
    built = time.perf_counter()

    is_eligible = simulation.calculate("eligible", period)
    amount_tenge = simulation.calculate("amount", period)
    calculated = time.perf_counter()

    return {
        "eligible": is_eligible,
        "amount_tenge": amount_tenge,
        "seconds_build": built - started,
        "seconds_calculate": calculated - built,
    }


def synth_households(count: int, seed: int) -> dict[str, NDArray[numpy.int64]]:
    """A plausible population: sizes 1-8, log-normal per-capita income around 105,000
    tenge clipped to 0-200,000 (2 % with none), and work and loan counts that fit the size."""
    rng = numpy.random.default_rng(seed)
    sizes = rng.choice(
        numpy.arange(1, 9), size=count, p=[0.12, 0.18, 0.20, 0.20, 0.14, 0.08, 0.05, 0.03]
    )
    income_tiyn = numpy.rint(rng.lognormal(numpy.log(10_500_000), 0.8, count))
    income_tiyn = numpy.clip(income_tiyn, 0, 20_000_000).astype(numpy.int64)
    income_tiyn[rng.random(count) < 0.02] = 0
    idle = (rng.random(count) < 0.15).astype(numpy.int64)
    return {
        "members": sizes.astype(numpy.int64),
        "per_capita_income_tiyn": income_tiyn,
        "idle_able_bodied_adults": idle,
        "non_mortgage_loans": rng.poisson(0.3, count).astype(numpy.int64),
    }


def exact_asp(
    arrays: dict[str, NDArray[Any]], subsistence_minimum: int, median_tiyn: int
) -> tuple[NDArray[numpy.bool_], NDArray[numpy.int64]]:
    """The same rule in int64 tiyn: the reference the float32 results are checked against."""
    by_minimum = (70 * subsistence_minimum + 50) // 100
    by_median = (35 * median_tiyn + 5_000) // 10_000
    line_tiyn = 100 * max(by_minimum, by_median)
    income = arrays["per_capita_income_tiyn"]
    is_eligible = (
        (income <= line_tiyn)
        & (arrays["idle_able_bodied_adults"] == 0)
        & (arrays["non_mortgage_loans"] == 0)
    )
    amount_tiyn = numpy.where(is_eligible, (line_tiyn - income) * arrays["members"], 0)
    return is_eligible, amount_tiyn.astype(numpy.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--seed", type=int, default=20261001)
    options = parser.parse_args()

    started = time.perf_counter()
    system = asp_system()
    seconds_system = time.perf_counter() - started

    arrays = synth_households(options.households, options.seed)
    incomes = numpy.sort(arrays["per_capita_income_tiyn"])
    median_tiyn = int(incomes[(len(incomes) - 1) // 2])  # the lower median: whole tiyn
    result = run_openfisca(arrays, options.month, median_tiyn / 100)

    minimum = int(system.parameters(options.month).asp.subsistence_minimum)
    exact_eligible, exact_tiyn = exact_asp(arrays, minimum, median_tiyn)
    # float32 × 100 is exact in float64 (24 + 7 significant bits), so is the difference.
    error_tiyn = numpy.abs(result["amount_tenge"].astype(numpy.float64) * 100 - exact_tiyn)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"households              {options.households:>12,}")
    print(f"persons                 {int(numpy.maximum(arrays['members'], 1).sum()):>12,}")
    print(f"median per capita       {median_tiyn / 100:>12,.2f} tenge")
    print(f"system build            {seconds_system:>12.3f} s (once, not timed per run)")
    print(f"simulation build        {result['seconds_build']:>12.3f} s")
    print(f"calculate               {result['seconds_calculate']:>12.3f} s")
    print(f"amount dtype            {result['amount_tenge'].dtype!s:>12}")
    print(f"eligible                {int(exact_eligible.sum()):>12,}")
    print(f"eligibility mismatches  {int((result['eligible'] != exact_eligible).sum()):>12,}")
    print(f"amounts off by >=1 tiyn {int((error_tiyn >= 1).sum()):>12,}")
    print(f"largest error           {float(error_tiyn.max()):>12.4f} tiyn")
    print(f"peak RSS                {peak_mib:>12,.0f} MiB")


if __name__ == "__main__":
    main()
