"""The published DRL set shipped with radtriage (UK national DRLs of 20 November 2024, adult CT): it loads,
its rows hold the values read from the page, each row cites its source, table and heading, it is not an
example, every CT level names its phantom, `radtriage dose drl import` keeps it, and the mapping shown in
docs/dose.md fits it and judges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from radtriage.cli import main
from radtriage.dose.config import parse_dose_config
from radtriage.dose.drl import EXAMPLE_MARK, load_set
from radtriage.dose.judge import examination_of, judge
from radtriage.dose.model import CT_QUANTITIES
from tests.unit.test_dose_judge import _ct

ROOT = Path(__file__).parents[2]
SET = ROOT / "drl" / "uk-ndrl-2024-11.yaml"
HEAD = "CT head (acute stroke)"


@pytest.fixture(scope="module")
def uk():
    drl, _sha = load_set(SET)
    return drl


@pytest.mark.parametrize(("examination", "quantity", "phantom", "value", "unit"), [
    (HEAD, "CTDIvol", 16, 47, "mGy"),
    (HEAD, "DLP", 16, 790, "mGy.cm"),
    ("CT paranasal sinuses (sinus disease)", "DLP", 16, 160, "mGy.cm"),
    ("CT chest (lung cancer)", "CTDIvol", 32, 8.5, "mGy"),
    ("CTPA (pulmonary embolism)", "CTDIvol", 32, 9.1, "mGy"),
    ("CT abdomen and pelvis (abscess)", "DLP", 32, 530, "mGy.cm"),
    ("CT KUB (stones/colic)", "CTDIvol", 32, 6.3, "mGy"),
    ("CT urogram (tumour/stones/colic)", "DLP", 32, 890, "mGy.cm"),
])
def test_rows_hold_the_values_read_from_the_page(uk, examination, quantity, phantom, value, unit):
    level = uk.level(examination, "adult", quantity, phantom)
    assert level is not None and (level.value, level.unit) == (value, unit)
    assert uk.level(examination, "adult", quantity, 48 - phantom) is None  # never on the other phantom


def test_a_table_without_ctdivol_gives_dlp_only_and_unread_rows_are_absent(uk):
    assert uk.levels_for("CT urogram (tumour/stones/colic)", "adult")[0].quantity == "DLP"
    assert len(uk.levels_for("CT urogram (tumour/stones/colic)", "adult")) == 1
    assert not any(re.search(r"cervical|coronary|ctca", e, re.IGNORECASE) for e in uk.examinations)


def test_every_row_cites_and_the_set_is_not_an_example(uk):
    assert not uk.example and EXAMPLE_MARK not in uk.name.upper()
    assert "20 November 2024" in uk.source and uk.version == "2024-11-20"
    for lv in uk.levels:
        assert lv.source.strip() and lv.table.startswith("Table 1, row ")
        assert lv.page == "Table 1. Adult CT examinations"
        assert (lv.phantom_cm in (16, 32)) == (lv.quantity in CT_QUANTITIES)
    assert len(uk.levels) == 19


def test_drl_import_keeps_it_and_a_second_import_is_the_same(tmp_path, monkeypatch, capsys, uk):
    monkeypatch.setenv("RADTRIAGE_DATA_DIR", str(tmp_path / "data"))
    config = f"--config={tmp_path / 'absent.yaml'}"
    assert main([config, "dose", "drl", "import", str(SET), "--by", "physicist"]) == 0
    assert capsys.readouterr().out.strip() == f"{uk.label}: imported"
    assert main([config, "dose", "drl", "import", str(SET)]) == 0
    assert capsys.readouterr().out.strip() == f"{uk.label}: same"
    assert main([config, "dose", "drl", "list"]) == 0
    assert uk.name in capsys.readouterr().out


def test_missing_values_are_listed_in_the_file_and_the_docs():
    head = SET.read_text(encoding="utf-8").split("\nname:")[0]
    docs = (ROOT / "docs" / "dose.md").read_text(encoding="utf-8")
    for text in (head, docs):
        assert "MISSING" in text.upper() and "cervical spine" in text.lower() and "paediatric CT" in text


def _docs_mapping() -> dict:
    docs = (ROOT / "docs" / "dose.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- uk-ndrl-mapping -->\n```yaml\n(.*?)```", docs, re.DOTALL)
    assert block, "docs/dose.md lost its UK NDRL mapping example"
    return yaml.safe_load(block.group(1))


def test_the_documented_mapping_fits_the_set_and_judges(uk):
    config = parse_dose_config(_docs_mapping(), "docs/dose.md")
    config.check_against(uk, "docs/dose.md")
    assert (config.drl_set.name, config.drl_set.version) == (uk.name, uk.version)
    assert config.examination_of({"Modality": "CT", "ProtocolName": "CODE STROKE"}) == HEAD
    assert config.examination_of({"Modality": "CT", "ProtocolName": "CTPA"}) == "CTPA (pulmonary embolism)"
    assert config.examination_of({"Modality": "CT", "ProtocolName": "ROUTINE HEAD"}) is None  # not a stroke
    exam = examination_of([_ct(16, 52.0, 700.0, protocol="CODE STROKE")], config, uk)
    assert (exam.examination, exam.band) == (HEAD, "adult")
    assert [f.quantity for f in judge(exam, config, uk)] == ["CTDIvol"]  # 52 > 47 mGy; 700 < 790 mGy.cm
    child = examination_of([_ct(16, 52.0, 700.0, age=8, protocol="CODE STROKE")], config, uk)
    assert child.band is None and judge(child, config, uk) == []  # no paediatric level in this set
