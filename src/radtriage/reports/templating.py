"""The report templates: jinja2 files per language (data a site edits and adds to), loaded strictly.

``templates/<language>/report.j2`` holds the blocks that are not about one task (examination, technique,
no_results, ai_statement); ``templates/<language>/<task>.j2`` the blocks ``findings`` and ``impression`` of
one task; ``templates/<language>/language.yaml`` the language's name, code, section headings and review
mark; ``templates/glossary.yaml`` the Chinese medical terms. A site's folder (settings ``reports.templates_dir``)
laid out the same way replaces a file of the same name or adds a language or task.

Templates are rendered with `StrictUndefined`: a field that does not exist is an error, never an empty
string. `Templates.check` renders every template against sample data (`radtriage.reports.samples`) and
raises `TemplateProblem` naming the file and the field, so a bad template stops start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.exceptions import TemplateSyntaxError, UndefinedError

SHIPPED = Path(__file__).parent / "templates"
REPORT = "report.j2"
REPORT_BLOCKS = ("examination", "technique", "no_results", "ai_statement")
TASK_BLOCKS = ("findings", "impression")
REVIEW_MARK = re.compile(r"\{#-?\s*review:\s*([^#]*?)\s*-?#\}")


class TemplateProblem(Exception):
    """A template that cannot render: ``file`` and ``field`` (the unknown name, or None for a syntax error)."""

    def __init__(self, file: str, field: str | None, detail: str) -> None:
        where = f"unknown field {field!r}" if field else detail
        super().__init__(f"report template {file}: {where}")
        self.file, self.field, self.detail = file, field, detail


@dataclass(frozen=True)
class Term:
    term: str
    english: str
    source: str
    reviewed: bool


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    headings: Mapping[str, str]
    review: str  # "done", or why not (e.g. "pending (not yet reviewed by a Hong Kong radiologist)")

    @property
    def reviewed(self) -> bool:
        return self.review.startswith("done")


def _field_of(exc: Exception) -> str | None:
    text = str(exc)
    found = re.search(r"has no attribute '([^']+)'", text) or re.search(r"'([^']+)' is undefined", text) \
        or re.search(r"no element '?([^']+?)'?$", text)
    return found.group(1) if found else None


def _template_file_of(exc: BaseException, template: Any, fallback: str) -> str:
    """``file:line`` of the template frame the error came from (the line of the template, not of its code)."""
    tb, name = exc.__traceback__, fallback
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            line = template.get_corresponding_lineno(tb.tb_lineno) if template is not None \
                and template.filename == filename else tb.tb_lineno
            name = f"{filename}:{line}"
        tb = tb.tb_next
    return name


class Templates:
    """Every language's templates, the site's over the shipped ones."""

    def __init__(self, site_dir: Path | None = None) -> None:
        self.roots = [r for r in (site_dir, SHIPPED) if r is not None]
        codes = sorted({d.name for r in self.roots if r.is_dir() for d in r.iterdir() if (d / REPORT).is_file()
                        or (d / "language.yaml").is_file()})
        self.envs = {c: Environment(loader=ChoiceLoader([FileSystemLoader(str(r / c)) for r in self.roots]),
                                    undefined=StrictUndefined, autoescape=False, trim_blocks=True,
                                    lstrip_blocks=True, keep_trailing_newline=False) for c in codes}
        self.languages = {c: self._language(c) for c in codes}

    def _find(self, relative: str) -> Path | None:
        return next((r / relative for r in self.roots if (r / relative).is_file()), None)

    def _language(self, code: str) -> Language:
        path = self._find(f"{code}/language.yaml")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}
        headings = dict(doc.get("headings") or {})
        for section in (*REPORT_BLOCKS, *TASK_BLOCKS, "addendum"):
            headings.setdefault(section, section.replace("_", " ").capitalize())
        review = str(doc.get("review", "pending"))
        files_pending = [n for n in self.files(code) if not self.review_of(code, n).startswith("done")]
        if files_pending and review.startswith("done"):
            review = "pending (" + ", ".join(files_pending) + ")"
        return Language(code=str(doc.get("code", code)), name=str(doc.get("name", code)), headings=headings,
                        review=review)

    def files(self, code: str) -> list[str]:
        return sorted(self.envs[code].list_templates(filter_func=lambda n: n.endswith(".j2")))

    def tasks(self, code: str) -> list[str]:
        return [n.removesuffix(".j2") for n in self.files(code) if n != REPORT]

    def review_of(self, code: str, name: str) -> str:
        """A template file's review mark (its first ``{# review: ... #}`` comment): "done ...", else pending."""
        source, _, _ = self.envs[code].loader.get_source(self.envs[code], name)  # type: ignore[union-attr]
        found = REVIEW_MARK.search(source)
        return found.group(1) if found else "pending"

    def render(self, code: str, name: str, context: Mapping[str, Any]) -> dict[str, str]:
        """Every block of one template, each trimmed (blank lines dropped); raises `TemplateProblem`."""
        env, t = self.envs[code], None
        try:
            t = env.get_template(name)
            ctx = t.new_context(dict(context))
            for _ in t.root_render_func(ctx):  # the whole file once: its top-level {% set %} reach the blocks
                pass
            out = {block: "".join(render(ctx)) for block, render in t.blocks.items()}
        except TemplateSyntaxError as exc:
            raise TemplateProblem(f"{exc.filename or name}:{exc.lineno}", None, exc.message or str(exc)) from exc
        except UndefinedError as exc:
            raise TemplateProblem(_template_file_of(exc, t, f"{code}/{name}"), _field_of(exc), str(exc)) from exc
        except TemplateError as exc:
            raise TemplateProblem(_template_file_of(exc, t, f"{code}/{name}"), None, str(exc)) from exc
        return {block: "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())
                for block, text in out.items()}

    def glossary(self) -> list[Term]:
        path = self._find("glossary.yaml")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}
        return [Term(str(t["term"]), str(t["english"]), str(t.get("source", "")), bool(t.get("reviewed", False)))
                for key in ("terms", "phrases") for t in (doc.get(key) or [])]

    def check(self) -> None:
        """Render every template of every language against the sample data; a missing block is a problem too."""
        from radtriage.reports.samples import report_context, task_contexts

        for code in self.envs:
            self._blocks(code, REPORT, report_context(), REPORT_BLOCKS)
            for task in self.tasks(code):
                for context in task_contexts(task):
                    self._blocks(code, f"{task}.j2", context, TASK_BLOCKS)

    def _blocks(self, code: str, name: str, context: Mapping[str, Any], wanted: tuple[str, ...]) -> dict[str, str]:
        out = self.render(code, name, context)
        missing = [b for b in wanted if b not in out]
        if missing:
            raise TemplateProblem(f"{code}/{name}", None, f"has no block {missing[0]!r}")
        return out
