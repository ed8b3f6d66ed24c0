"""Report drafts (radtriage.reports): every finding type in English and Traditional Chinese with its
measurements, the worklist's own words in the English draft, only live results, every Chinese word from the
glossary, unreviewed translations marked, and a template error that names its file and field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from radtriage.reports.draft import draft
from radtriage.reports.samples import SAMPLE_HEADER, SAMPLES
from radtriage.reports.templating import SHIPPED, Templates, TemplateProblem

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
STUDY = {"study_description": "CT HEAD WO", "study_date": "20261207", "accession_number": "ACC-9"}


def _rows(*results, state: str = "live") -> list[dict]:
    return [{"id": i + 1, "pipeline_id": f"{r.task}-{i}", "series_uid": "1.2.3.4", "state": state,
             "result": r.model_dump(mode="json")} for i, r in enumerate(results)]


@pytest.fixture(scope="module")
def templates() -> Templates:
    t = Templates()
    t.check()
    return t


def _draft(templates: Templates, *results) -> dict[str, dict[str, str]]:
    return draft(templates, STUDY, _rows(*results), {"1.2.3.4": SAMPLE_HEADER})


def test_every_finding_type_renders_in_both_languages_with_its_measurements(templates: Templates) -> None:
    ich, lvo, nodule, bone = (SAMPLES[t][0] for t in ("ich", "lvo", "nodule", "bone_age"))
    d = _draft(templates, ich, lvo, nodule, bone)
    en, zh = d["en"], d["zh-Hant"]
    for lang in (en, zh):  # the numbers are the same in both languages
        for number in ("12.4", "15", "16.2", "15.4", "1900.5", "7.5", "6.8", "150", "124", "+26", "+2.4"):
            assert number in lang["findings"], (number, lang["findings"])
        assert "4B" in lang["findings"] and "4B" in lang["impression"] and "3" in lang["findings"]
    assert "intraparenchymal haemorrhage in the brain parenchyma, estimated volume 12.4 mL" in en["findings"]
    assert "腦實質內出血，位於腦實質，估計體積約 12.4 毫升" in zh["findings"]
    assert "occlusion of the left M1 segment of the middle cerebral artery" in en["findings"]
    assert "左側大腦中動脈M1段閉塞" in zh["findings"]
    assert "solid (assumed) pulmonary nodule, longest diameter 16.2 mm, mean diameter 15.4 mm" in en["findings"]
    assert "Lung-RADS 3 (follow-up: low-dose CT in 6 months)" in en["findings"]
    assert "Lung-RADS 3 類（跟進：6 個月後覆查低劑量電腦掃描）" in zh["findings"]
    assert "bone age 150 months (Greulich-Pyle), chronological age 124 months, difference +26 months, z-score +2.4" \
        in en["findings"]
    assert "骨齡 150 個月（Greulich-Pyle 圖譜），實際年齡 124 個月，相差 +26 個月，Z 值 +2.4" in zh["findings"]
    assert "Bone age advanced" in en["impression"] and "骨齡較實際年齡超前" in zh["impression"]
    assert en["impression"].startswith("1. ") and "\n4. " in en["impression"]  # one numbered line per result
    assert 'CT series "AXIAL 5mm" of the head, 5 mm slices, H30s kernel, 120 kVp, without contrast' in en["technique"]
    assert "切面厚度 5 毫米" in zh["technique"] and "CT HEAD WO, 2026-12-07 (accession ACC-9)." == en["examination"]
    assert "assistance of AI" in en["ai_statement"] and "人工智能輔助擬備" in zh["ai_statement"]


def test_negative_results_and_an_unknown_age_say_so(templates: Templates) -> None:
    d = _draft(templates, *(SAMPLES[t][1] for t in ("ich", "lvo", "nodule", "bone_age")))
    assert "No intracranial haemorrhage" in d["en"]["findings"] and "未見顱內出血" in d["zh-Hant"]["findings"]
    assert "No large vessel occlusion" in d["en"]["findings"] and "未見大血管閉塞" in d["zh-Hant"]["findings"]
    assert "Lung-RADS 1: continue annual screening" in d["en"]["impression"]
    assert "chronological age unknown" in d["en"]["findings"] and "實際年齡不詳" in d["zh-Hant"]["findings"]


def test_the_english_draft_says_each_finding_as_the_worklist_does(templates: Templates) -> None:
    results = [SAMPLES[t][0] for t in SAMPLES]
    en = _draft(templates, *results)["en"]["findings"]
    for r in results:
        for f in r.findings:
            assert f.text in en  # the text radtriage.inference.findings wrote, word for word


def test_only_live_results_and_findings_not_removed_enter_a_draft(templates: Templates) -> None:
    ich, nodule = SAMPLES["ich"][0], SAMPLES["nodule"][0]
    rows = _rows(ich) + [{**_rows(nodule)[0], "id": 2, "state": "shadow"}]
    d = draft(templates, STUDY, rows, {})
    assert "12.4" in d["en"]["findings"] and "nodule" not in d["en"]["findings"].lower()
    d = draft(templates, STUDY, _rows(nodule), {}, removed=["1:0"])  # the 4B nodule taken out by the reader
    assert "16.2" not in d["en"]["findings"] and "Lung-RADS 3:" in d["en"]["impression"]
    assert draft(templates, STUDY, [], {})["en"]["findings"] == "No AI finding is available for this study."


def test_every_chinese_word_is_in_the_glossary_and_unreviewed_is_marked(templates: Templates) -> None:
    glossary = templates.glossary()
    assert glossary and all(t.term and t.english and t.source for t in glossary)
    terms = sorted({t.term for t in glossary}, key=len, reverse=True)
    texts = [*templates.languages["zh-Hant"].headings.values()]
    for task, results in SAMPLES.items():
        for r in results:
            texts += list(draft(templates, STUDY, _rows(r), {"1.2.3.4": SAMPLE_HEADER})["zh-Hant"].values())
    for text in texts:
        rest = text
        for term in terms:
            rest = rest.replace(term, " ")
        assert not CJK.findall(rest), f"not in glossary.yaml: {''.join(CJK.findall(rest))!r} in {text!r}"
    zh = templates.languages["zh-Hant"]
    assert not zh.reviewed and "Hong Kong radiologist" in zh.review  # shown on the page
    assert any(not t.reviewed for t in glossary) and templates.languages["en"].reviewed
    for name in templates.files("zh-Hant"):
        assert not templates.review_of("zh-Hant", name).startswith("done")


def test_a_template_error_names_its_file_and_field(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "en").mkdir(parents=True)
    text = (SHIPPED / "en" / "ich.j2").read_text().replace("{{ f.volume_ml }} mL", "{{ f.volum }} mL", 1)
    (site / "en" / "ich.j2").write_text(text)
    with pytest.raises(TemplateProblem) as err:
        Templates(site).check()
    assert err.value.field == "volum" and "ich.j2" in err.value.file and str(site) in err.value.file
    assert "unknown field 'volum'" in str(err.value)
    (site / "en" / "ich.j2").write_text(text.replace("{{ f.volum }}", "{{ f.volume_ml"))
    with pytest.raises(TemplateProblem) as err:
        Templates(site).check()
    assert "ich.j2" in err.value.file


def test_a_site_adds_a_task_and_overrides_a_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for lang in ("en", "zh-Hant"):
        (site / lang).mkdir(parents=True)
        (site / lang / "fracture.j2").write_text(
            "{% block findings %}{% for f in findings %}{{ f.text }}{% endfor %}{% endblock %}"
            "{% block impression %}{{ findings | length }}{% endblock %}")
    shutil.copy(SHIPPED / "en" / "report.j2", site / "en" / "report.j2")
    t = Templates(site)
    t.check()
    assert "fracture" in t.tasks("en") and "fracture" in t.tasks("zh-Hant")


def test_a_bad_template_stops_the_app_from_being_built(make_settings, tmp_path: Path) -> None:
    from radtriage.api import create_app
    from radtriage.service import build_services

    site = tmp_path / "site"
    (site / "zh-Hant").mkdir(parents=True)
    (site / "zh-Hant" / "lvo.j2").write_text((SHIPPED / "zh-Hant" / "lvo.j2").read_text().replace("f.side", "f.sied", 1))
    services = build_services(make_settings(reports={"templates_dir": str(site)}))
    try:
        with pytest.raises(TemplateProblem, match=r"lvo\.j2.*unknown field 'sied'"):
            create_app(services)
    finally:
        services.close()
