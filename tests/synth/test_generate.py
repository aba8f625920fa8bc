"""The synthetic population: determinism, schema, realism and every injected defect."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from qamqor.registry import iin
from qamqor.registry.catalogue import regions, sources
from qamqor.synth import DEFECT_CLASSES, FormatSpec, generate, parse_format_override

HIGH_RATES = dict.fromkeys(DEFECT_CLASSES, 0.05) | {
    "deceased_still_listed": 0.5,
    "income_after_death": 0.5,
    "stale_records": 0.3,
}


def read_extract(out: Path, source: str) -> list[dict[str, str | None]]:
    entry = next(f for f in manifest(out)["files"] if f["source"] == source)
    path = out / entry["path"]
    if entry["format"] == "parquet":
        return [
            {k: None if v is None else str(v) for k, v in row.items()}
            for row in pq.read_table(path).to_pylist()
        ]
    if entry["format"] == "jsonl":
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    text = path.read_bytes().decode(entry["encoding"])
    return list(csv.DictReader(io.StringIO(text), delimiter=entry["delimiter"]))


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def defective(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("defective")
    generate(out, 4_000, 11, defect_rates=HIGH_RATES, chunk_households=1_500)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, 30_000, 5, defect_rates=dict.fromkeys(DEFECT_CLASSES, 0.0))
    return out


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate(tmp_path / name, 700, seed, chunk_households=300)
        runs.append({f["source"]: f["sha256"] for f in manifest(tmp_path / name)["files"]})
    assert runs[0] == runs[1]
    assert all(runs[0][s] != runs[2][s] for s in runs[0])
    truth = [(tmp_path / n / "truth" / "persons.parquet").read_bytes() for n in ("a", "b")]
    assert truth[0] == truth[1]


def test_manifest_counts_and_hashes_match_the_files(defective: Path) -> None:
    data = manifest(defective)
    assert data["format_version"] == 1 and data["households"] == 4_000
    for entry in data["files"]:
        path = defective / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert len(read_extract(defective, entry["source"])) == entry["rows"]


def test_every_extract_has_exactly_the_catalogue_columns(defective: Path) -> None:
    for entry in manifest(defective)["files"]:
        path = defective / entry["path"]
        expected = list(sources()[entry["source"]].column_names)
        if entry["format"] == "parquet":
            assert pq.read_schema(path).names == expected
        elif entry["format"] == "jsonl":
            first = path.read_text("utf-8").splitlines()[0]
            assert list(json.loads(first)) == expected
        else:
            raw = path.read_bytes()
            assert raw.startswith(b"\xef\xbb\xbf") == (entry["encoding"] == "utf-8-sig")
            header = raw.decode(entry["encoding"]).splitlines()[0]
            assert header == entry["delimiter"].join(expected)


def test_default_formats_and_date_styles(defective: Path) -> None:
    formats = {
        f["source"]: (f["format"], f["encoding"], f["delimiter"])
        for f in manifest(defective)["files"]
    }
    assert formats["population"] == ("csv", "utf-8-sig", ";")
    assert formats["household"] == ("csv", "cp1251", ";")
    assert formats["income"][0] == "parquet" and formats["property"][0] == "jsonl"
    person = read_extract(defective, "population")[0]
    assert person["birth_date"][2] == "." and person["death_date"] == ""
    assert read_extract(defective, "property")[0]["disposed_on"] is None


def test_truth_iins_are_valid_and_unique(clean: Path) -> None:
    persons = pq.read_table(clean / "truth" / "persons.parquet")
    iins = persons.column("iin").to_pylist()
    assert len(set(iins)) == len(iins)
    assert all(iin.is_valid(x) for x in iins)
    births = persons.column("birth_date").to_pylist()
    sexes = persons.column("sex").to_pylist()
    assert all(
        iin.birth_date_and_sex(x) == (b, s) for x, b, s in zip(iins, births, sexes, strict=True)
    )


def test_population_is_shaped_like_kazakhstan(clean: Path) -> None:
    persons = pq.read_table(clean / "truth" / "persons.parquet").to_pydict()
    households = pq.read_table(clean / "truth" / "households.parquet").to_pydict()
    n = len(persons["iin"])
    urban = sum(s == "urban" for s in persons["settlement"]) / n
    assert urban == pytest.approx(0.636, abs=0.015)
    total = sum(r.population for r in regions())
    counts = Counter(persons["region_code"])
    for region in regions():
        assert counts[region.code] / n == pytest.approx(region.population / total, abs=0.01)
    by = {"urban": [], "rural": []}
    for size, settlement in zip(households["size"], households["settlement"], strict=True):
        by[settlement].append(size)
    assert 2.7 < sum(by["urban"]) / len(by["urban"]) < 3.3
    assert 3.6 < sum(by["rural"]) / len(by["rural"]) < 4.4
    assert 3.1 < n / len(households["household_id"]) < 3.5
    died = sum(not a for a in persons["alive"]) / n
    assert 0.003 < died < 0.012
    assert 0.02 < sum(g is not None for g in persons["disability_group"]) / n < 0.05


def test_no_defects_means_none_logged_and_all_iins_valid(clean: Path) -> None:
    assert pq.read_table(clean / "truth" / "defects.parquet").num_rows == 0
    for source in ("population", "employment"):
        rows = read_extract(clean, source)
        assert all(iin.is_valid(r["iin"]) for r in rows)
        assert len({r["record_id"] for r in rows}) == len(rows)


def test_every_defect_class_is_logged_and_present(defective: Path) -> None:
    log = pq.read_table(defective / "truth" / "defects.parquet").to_pylist()
    assert {d["defect"] for d in log} == set(DEFECT_CLASSES)
    extracts = {s: read_extract(defective, s) for s in sources()}
    by_id = {s: {} for s in extracts}
    for s, rows in extracts.items():
        for r in rows:
            by_id[s].setdefault(r["record_id"], []).append(r)
    # a second registration carries its own IIN, not the one the log names the person by
    second = {d["record_id"] for d in log if d["defect"] == "duplicate_person"}
    for d in log:
        rows = by_id[d["source"]].get(d["record_id"], [])
        kind = d["defect"]
        if kind == "missing_income_months":
            assert d["record_id"] is None
            period = d["detail"].rsplit(" ", 1)[1]
            assert not any(
                r["iin"] == d["iin"] and r["period"] == period and r["income_type"] == "wage"
                for r in extracts["income"]
            )
            continue
        assert rows, d
        row = rows[0]
        if kind == "invalid_iin_check_digit":
            assert not iin.is_valid(row["iin"])
            assert row["iin"][:7] == d["iin"][:7]
            assert row["iin"][:11] == d["iin"][:11] or d["record_id"] in second
        elif kind == "duplicate_rows":
            assert len(rows) >= 2 and rows[0] == rows[1]
        elif kind == "mojibake":
            assert any(c in row["last_name"] + row["first_name"] for c in "РСТУ")
            assert any(ord(c) >= 0x80 or c in "?" for c in row["last_name"] + row["first_name"])
        elif kind == "birth_date_iin_mismatch":
            day, month, year = row["birth_date"].split(".")
            assert f"{year[2:]}{month}{day}" != d["iin"][:6]
        elif kind in ("deceased_still_listed", "person_in_two_households"):
            assert row["member_to"] in ("", None)
        elif kind == "stale_records":
            assert row["end_date"] == "" and row["updated_on"] < "2025-10-01"
        elif kind == "income_after_death":
            assert row["period"] >= "2026-08"
        elif kind == "duplicate_person":
            # same birth date and sex (IIN digits 1-7), another serial
            assert row["iin"][:7] == d["iin"][:7] and row["iin"][7:11] != d["iin"][7:11]


def test_format_override(tmp_path: Path) -> None:
    source, spec = parse_format_override("income=csv:utf-8:;")
    assert (source, spec) == ("income", FormatSpec("csv", "utf-8", ";"))
    assert parse_format_override("property=parquet")[1].format == "parquet"
    generate(
        tmp_path, 200, 1, formats={"income": spec, "property": FormatSpec("parquet", None, None)}
    )
    files = {f["source"]: f["path"] for f in manifest(tmp_path)["files"]}
    assert files["income"] == "income.csv" and files["property"] == "property.parquet"
    with pytest.raises(ValueError):
        parse_format_override("income")


def test_memory_does_not_grow_with_households(tmp_path: Path) -> None:
    script = (
        "import resource, sys; from pathlib import Path; from qamqor.synth import generate\n"
        "generate(Path(sys.argv[1]), int(sys.argv[2]), 1, chunk_households=10_000)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    peaks = []
    for n in (20_000, 120_000):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / str(n)), str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peaks.append(int(done.stdout.split()[-1]))
    assert peaks[1] < peaks[0] * 1.3 + 30_000  # KiB: six times the households, same memory
