"""Claims computed on a sweep: ``paper/claims.yaml`` evaluated on the question tables (:mod:`analysis.questions`).

Each claim reads one row of one question's table, tests a comparison on it
(``low > 0``, ``low <= 0 <= high``, ``pvalue_holm >= 0.05 and low > -0.05``,
``verdict == "hides"``) and takes the sentence of its outcome with the row's
numbers put in. A claim whose row is missing, or whose comparison reads a
value that is not a number, is *not measured in this sweep* and takes its
``missing`` sentence: a sweep without Adam or without spikes still builds.

Rules every claim obeys, enforced here (:func:`load`, :func:`evaluate_claims`):

- *Equivalence.* A word of equivalence (:data:`EQUIVALENCE_WORDS`: "matches",
  "as much as", "no-op", ...) appears only in a claim of the equivalence kind
  (``equivalence: <margin name>``, a margin its question states in the
  ``questions:`` section, before the results are read), only in its ``holds``
  sentence or a case whose condition requires ``equivalent``, and only in a
  sentence that states the margin (``{margin}``); :func:`load` raises
  otherwise. Such a claim holds where ``equivalent``: the 90% interval
  (``low90``, ``high90``) lies inside +-margin (``inference.within_margin``);
  where it does not, it fails if the 95% interval excludes 0 and is
  *inconclusive* otherwise (its ``inconclusive`` sentence, with the interval).
- *Power.* A claim reading a p-value (``pvalue``, ``pvalue_holm``) on a row
  whose test cannot reject at its size after correction (``underpowered``),
  or reading an interval the row does not have because it has fewer than
  five units (``values`` lists them), is *underpowered*: its ``underpowered``
  sentence, never evidence either way.
- *Censoring.* A claim on a row resting only on censored panels
  (``all_censored``) makes no directional statement: status *censored*.
  ``bound_note`` is computed per pair (``effects.Study.censoring``).
- *Pooling.* A claim on a row pooled over optimizers whose effects have
  opposite signs (``opposite_signs``) is stated per optimizer instead
  (status *per optimizer*).
- *Multiplicity.* The headline claims are corrected together: Holm over the
  p-values of their tests (the p-value the comparison reads, or the one its
  interval implies, :func:`claim_pvalue`); a directional headline claim holds
  only where its adjusted p-value (``pvalue_family``) is below 0.05; claims.tex
  states the family's size and the correction (``claims-headline-note``).

Sentences are written once, for LaTeX, Markdown and plain text alike:
```code``` spans become ``\\texttt``, ``[[key|Author (year)]]`` becomes
``\\citet{key}`` in LaTeX and the text elsewhere, ``{field}`` or
``{field:spec}`` takes a row value (2 significant digits by default; minus
signs typeset in LaTeX). Besides the row's columns a sentence can use
``at_least`` ("at least " for a lower bound, "at most " for an upper one,
see ``bound``), ``bound_note``, and ``abs_``/``percent_`` of ``estimate``,
``low`` and ``high``.

:func:`write` writes ``claims.tex`` (``\\benchclaim{<id>}`` holds the
sentence; ``\\benchnum{claim-<id>-estimate}`` and ``-low``, ``-high``,
``-n``, ``-status`` its numbers) and ``claims.json`` (id, status, holds,
estimate, low, high, n, unit, sentence), and compares the outcomes with the
previous ``claims.json`` at the output path, or with a reference file:
a claim that held and fails now (or the reverse), or that is no longer
measured, gives a ``warning: claim <id> flipped: ...`` line.

The same claims evaluated on the two seed sets of a sweep with ``replication_seeds``
(``analysis.numbers.claim_outcomes``) are compared by :func:`seed_set_flips` (on :func:`outcome_text`: the
status, and per optimizer each optimizer's); :func:`findings_markdown` then gives each claim's outcome on the
replication seeds, the flips marked, and ``analysis.replication`` writes the paper's replication section.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.effects import ALPHA
from analysis.inference import holm, within_margin
from analysis.latex import number, tex_escape
from analysis.questions import QUESTIONS, Question, by_id
from bench import paths

CLAIMS_FILE = paths.claims_file(Path(__file__).resolve().parents[1])
"""The study's claims (``paper/claims.yaml``) of this repository."""

NOT_MEASURED = "not measured"
INCONCLUSIVE = "inconclusive"
UNDERPOWERED = "underpowered"
CENSORED = "censored"
PER_OPTIMIZER = "per optimizer"
STATUSES = ("holds", "fails", INCONCLUSIVE, UNDERPOWERED, CENSORED, PER_OPTIMIZER, NOT_MEASURED)
CLAIM_KEYS = {"id", "question", "function", "row", "claim", "holds", "fails", "missing", "cases", "effect",
              "interval", "headline", "equivalence", "subject", "inconclusive", "underpowered"}
EQUIVALENCE_WORDS = re.compile(
    r"(?<![-\w])(match|matches|matched|matching|as much as|as well as|no detectable cost|no-op|equivalent|"
    r"equivalence|same as|alike|changes nothing|unchanged|add up|adds up|indistinguishable|on par|no detectable|"
    r"no difference|scores? the same)(?![-\w])", re.IGNORECASE)
"""Words that claim two things are the same: only an equivalence test within a stated margin may say them."""
PVALUES = ("pvalue", "pvalue_holm")
"""The columns a claim reads when it rests on a test."""
HEADLINE_CORRECTION = "Holm"
GENERIC = {
    "inconclusive": "{subject}: inconclusive at the stated margin of {margin}: {estimate} ({ci}; the 90% interval "
                    "{low90} to {high90} is not inside plus or minus {margin}).",
    "underpowered": "{subject}: underpowered, no conclusion is drawn ({power_note}).",
    "censored": "{subject}: no direction is claimed ({censor_note}); the estimate is {estimate} ({ci}{bound_note}).",
}
"""The sentences of the rule-given outcomes, where a claim does not write its own (``subject``: the claim's,
by default its question's title)."""
REQUIRED_KEYS = {"id", "question", "function", "row", "claim", "holds", "fails", "missing"}
QUESTION_KEYS = ("margins",)
"""What the claims file states per question, before the results are read."""


@dataclass(frozen=True)
class Claim:
    """One entry of ``claims.yaml``."""

    id: str
    question: str
    function: str
    row: Mapping[str, Any]
    claim: str
    holds: str
    fails: str
    missing: str
    cases: tuple[tuple[str, str], ...] = ()
    figure: str = ""
    """The stem of its question's figure."""
    effect: str = "{at_least}{estimate}"
    interval: str = "{low} to {high}"
    headline: bool = False
    equivalence: str = ""
    """The margin (a name of its question's ``margins``) of an equivalence claim; empty: not one."""
    subject: str = ""
    """What the claim is about, for the rule-given sentences (:data:`GENERIC`); default: the question's title."""
    inconclusive: str = GENERIC["inconclusive"]
    underpowered: str = GENERIC["underpowered"]


@dataclass
class Outcome:
    """A claim evaluated on a sweep: its status, the row it read and its sentence in each format."""

    claim: Claim
    status: str
    values: dict[str, Any] = field(default_factory=dict)
    sentence: dict[str, str] = field(default_factory=dict)

    @property
    def holds(self) -> bool | None:
        """True where the claim holds, False where it fails, None for every other status."""
        return {"holds": True, "fails": False}.get(self.status)

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value) if _is_number(value) and math.isfinite(float(value)) else None


def load(path: Path | str = CLAIMS_FILE) -> tuple[dict[str, Question], list[Claim]]:
    """The questions (id -> declaration, with the margins the file states) and the claims of a claims file.

    The file's ``questions`` section states, per question id, the equivalence
    ``margins`` (name -> number) fixed before the results are read; they enter
    the declarations (``Question.margins``) and every claim of the question can
    read them as ``margin_<name>``. A ValueError names a malformed entry: an
    unknown key, question or function, or a claim whose ``question`` is not
    its function's.
    """
    document = yaml.safe_load(Path(path).read_text())
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        raise ValueError(f"{path}: expected a mapping with a list 'claims'")
    declared = _declared(path, document.get("questions") or {})
    claims, seen = [], set()
    for entry in document["claims"]:
        name = entry.get("id", "?") if isinstance(entry, dict) else "?"
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: claim {name}: expected a mapping")
        unknown, missing = set(entry) - CLAIM_KEYS, REQUIRED_KEYS - set(entry)
        if unknown or missing:
            raise ValueError(f"{path}: claim {name}: " + "; ".join(
                part for part in (f"unknown key(s) {', '.join(sorted(unknown))}" if unknown else "",
                                  f"missing key(s) {', '.join(sorted(missing))}" if missing else "") if part))
        if name in seen:
            raise ValueError(f"{path}: claim {name} appears twice")
        if entry["function"] not in QUESTIONS:
            raise ValueError(f"{path}: claim {name}: unknown function {entry['function']}; known: "
                             f"{', '.join(QUESTIONS)}")
        question = QUESTIONS[entry["function"]]
        if str(entry["question"]) != question.id:
            raise ValueError(f"{path}: claim {name}: function {question.name} answers {question.id}, "
                             f"not {entry['question']}")
        seen.add(name)
        for expression in [entry["claim"], *(case["when"] for case in entry.get("cases") or [])]:
            _parse(expression)
        claim = Claim(
            id=str(name), question=question.id, function=question.name, row=dict(entry["row"]),
            claim=str(entry["claim"]), holds=str(entry["holds"]), fails=str(entry["fails"]),
            missing=str(entry["missing"]),
            cases=tuple((str(case["when"]), str(case["text"])) for case in entry.get("cases") or []),
            figure=question.figure.stem, effect=str(entry.get("effect", Claim.effect)),
            interval=str(entry.get("interval", Claim.interval)), headline=bool(entry.get("headline", False)),
            equivalence=str(entry.get("equivalence", "") or ""),
            subject=str(entry.get("subject", "") or declared[question.id].title),
            inconclusive=str(entry.get("inconclusive", GENERIC["inconclusive"])),
            underpowered=str(entry.get("underpowered", GENERIC["underpowered"])))
        check_equivalence_words(claim, declared[question.id].margins, path)
        claims.append(claim)
    return declared, claims


def _requires_equivalent(expression: str) -> bool:
    """Whether a comparison is true only where ``equivalent`` is: ``equivalent`` or ``equivalent and ...``."""
    body = _parse(expression).body
    parts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    return any(isinstance(part, ast.Name) and part.id == "equivalent" for part in parts)


def check_equivalence_words(claim: Claim, margins: Mapping[str, float], path: Path | str = "") -> None:
    """Raise a ValueError where ``claim`` uses a word of equivalence (:data:`EQUIVALENCE_WORDS`) without an
    equivalence test behind it (see the module docstring): a claim not of the equivalence kind, a margin its
    question does not state, a sentence shown where the test did not pass, or one that does not state the
    margin (``{margin}``)."""
    where = f"{path}: claim {claim.id}"
    if claim.equivalence and claim.equivalence not in margins:
        raise ValueError(f"{where}: equivalence margin {claim.equivalence!r} is not stated for {claim.question} "
                         f"(questions: {claim.question}: margins: {{{claim.equivalence}: ...}}); stated: "
                         f"{', '.join(margins) or 'none'}")
    sentences = [("holds", claim.holds, True), ("fails", claim.fails, False), ("missing", claim.missing, False),
                 ("inconclusive", claim.inconclusive, False), ("underpowered", claim.underpowered, False),
                 *((f"case {when!r}", text, _requires_equivalent(when)) for when, text in claim.cases)]
    for label, text, shown_if_equivalent in sentences:
        word = EQUIVALENCE_WORDS.search(text)
        if word is None:
            continue
        said = f"{where}: {label} says {word.group(0)!r}"
        if not claim.equivalence:
            raise ValueError(f"{said}, a word of equivalence, but the claim is not an equivalence test "
                             "(give it `equivalence: <margin name>`, or say what the interval shows)")
        if not shown_if_equivalent:
            raise ValueError(f"{said}, but that sentence is shown where the equivalence test did not pass")
        if "{margin" not in text:
            raise ValueError(f"{said} without stating the margin ({{margin}})")


def _declared(path: Path | str, section: Any) -> dict[str, Question]:
    """The registry's questions by id, with the margins of the claims file's ``questions`` section."""
    declared = by_id()
    if not isinstance(section, dict):
        raise ValueError(f"{path}: questions: expected a mapping of question ids")
    for key, stated in section.items():
        if key not in declared:
            raise ValueError(f"{path}: questions: unknown question {key}; known: {', '.join(declared)}")
        stated = stated or {}
        if not isinstance(stated, dict) or set(stated) - set(QUESTION_KEYS):
            raise ValueError(f"{path}: questions: {key}: expected a mapping with keys {', '.join(QUESTION_KEYS)}")
        margins = stated.get("margins") or {}
        if not isinstance(margins, dict) or not all(_is_number(v) and v > 0 for v in margins.values()):
            raise ValueError(f"{path}: questions: {key}: margins: expected a mapping of names to numbers above 0")
        declared[key] = replace(declared[key], margins={str(k): float(v) for k, v in margins.items()})
    return declared


# -- comparisons ------------------------------------------------------------------------------------------------
_OPERATORS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
              ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Add: operator.add, ast.Sub: operator.sub,
              ast.Mult: operator.mul, ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _parse(expression: str) -> ast.Expression:
    """Parse a comparison, allowing only names, numbers, strings, arithmetic, comparisons, and/or/not and abs()."""
    tree = ast.parse(expression, mode="eval")
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare, ast.BinOp,
                   ast.Name, ast.Load, ast.Constant, ast.Call, *_OPERATORS)
        if not isinstance(node, allowed) or (isinstance(node, ast.Call) and (
                not isinstance(node.func, ast.Name) or node.func.id != "abs" or len(node.args) != 1)):
            raise ValueError(f"comparison {expression!r}: {type(node).__name__} is not allowed")
    return tree


def names(expression: str) -> set[str]:
    """The row fields a comparison reads."""
    return {node.id for node in ast.walk(_parse(expression)) if isinstance(node, ast.Name) and node.id != "abs"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _defined(value: Any) -> bool:
    if value is None:
        return False
    if _is_number(value):
        return not math.isnan(float(value))
    return not (isinstance(value, str) and value == "")


def evaluate(expression: str, values: Mapping[str, Any]) -> bool | None:
    """The truth of a comparison on a row's ``values``; None where it reads a missing or undefined value."""
    if not all(name in values and _defined(values[name]) for name in names(expression)):
        return None

    def run(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return run(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            value = values[node.id]
            return float(value) if _is_number(value) else value
        if isinstance(node, ast.BoolOp):
            results = (run(v) for v in node.values)
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.UnaryOp):
            return (not run(node.operand)) if isinstance(node.op, ast.Not) else _OPERATORS[type(node.op)](
                run(node.operand))
        if isinstance(node, ast.BinOp):
            return _OPERATORS[type(node.op)](run(node.left), run(node.right))
        if isinstance(node, ast.Call):
            return abs(run(node.args[0]))
        if isinstance(node, ast.Compare):
            left = run(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = run(right_node)
                if not _OPERATORS[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"comparison {expression!r}: cannot evaluate {type(node).__name__}")

    return bool(run(_parse(expression)))


# -- rows -------------------------------------------------------------------------------------------------------
def find_row(table: pd.DataFrame, selector: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one row of ``table`` matching every key of ``selector`` (floats within 1e-9); None if none.

    A selector matching several rows is a mistake in the claims file: ValueError.
    """
    if table is None or table.empty:
        return None
    mask = np.ones(len(table), dtype=bool)
    for key, wanted in selector.items():
        if key not in table.columns:
            return None
        column = table[key]
        if _is_number(wanted):
            numeric = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            mask &= np.isclose(numeric, float(wanted), rtol=1e-9, atol=0.0)
        else:
            mask &= (column.astype(str) == str(wanted)).to_numpy()
    hits = table[mask]
    if len(hits) > 1:
        raise ValueError(f"row {dict(selector)} matches {len(hits)} rows; name more columns")
    return None if hits.empty else {k: _plain(v) for k, v in hits.iloc[0].items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def bound_note(values: Mapping[str, Any]) -> str:
    """The censoring note of a row, from its per-pair counts (``effects.Study.censoring``; ``pairs`` of them, else
    ``n``): empty unless the estimate is neither a point nor a one-sided bound."""
    if str(values.get("bound", "") or "") != "both":
        return ""
    both, lower, upper = (int(values.get(k, 0) or 0) for k in ("both_pairs", "lower_pairs", "upper_pairs"))
    n = _count(values.get("pairs", values.get("n", "")))
    parts = []
    if both:
        where = "on its one task x model pair" if n == "1" else f"on {both} of {n} pairs"
        parts.append(f"{where} both compared ranges reach the top of the learning-rate grid")
    if lower and upper:
        parts.append(f"the difference is a lower bound on {lower} and an upper bound on {upper} of {n} pairs")
    return "; " + " and ".join(parts) + ", so the true difference may be larger or smaller" if parts else ""


def interval_text(values: Mapping[str, Any], target: str = "md") -> str:
    """``95% CI low to high over n unit``, or, with too few units for an interval, ``n unit, too few for an
    interval: values``."""
    if _is_number(values.get("low")) and math.isfinite(float(values["low"])):
        return render("95% CI {low} to {high} over {n} {unit}", values, target)
    if values.get("values"):
        return render("{n} {unit}, too few for an interval: {values}", values, target)
    return render("no interval", values, target)


def percent_interval_text(values: Mapping[str, Any]) -> str:
    """A share's interval in percent, ``95% CI low% to high% over n unit`` (``n``: the row's ``problems``, the
    units a share resamples), or, with too few units for an interval, ``n unit, too few for an interval:
    values`` (the units' shares)."""
    units = _count(values.get("problems", values.get("n")))
    unit = values.get("unit") or "units"
    if _is_number(values.get("low")) and math.isfinite(float(values["low"])):
        return (f"95% CI {number(100 * float(values['low']), 3)}% to {number(100 * float(values['high']), 3)}% "
                f"over {units} {unit}")
    if values.get("values"):
        return f"{units} {unit}, too few for an interval: {values['values']}"
    return "no interval"


def _count(value: Any) -> str:
    """A count as a whole number (a table's float column holds counts as floats)."""
    return str(int(value)) if _is_number(value) and math.isfinite(float(value)) else str(value)


def derived(values: Mapping[str, Any]) -> dict[str, Any]:
    """The row's values plus the helpers sentences may use: ``at_least``, ``bound_note``, ``abs_*``,
    ``percent_*``, ``power_note``, ``margin`` (where set) and ``ci`` (:func:`interval_text`, filled per target
    at rendering)."""
    out = dict(values)
    bound = str(values.get("bound", "") or "")
    out["at_least"] = {"lower": "at least ", "upper": "at most "}.get(bound, "")
    out["bound_note"] = bound_note(values)
    for name in ("estimate", "low", "high"):
        value = values.get(name)
        if _is_number(value):
            out[f"abs_{name}"] = abs(float(value))
            out[f"percent_{name}"] = 100 * float(value)
    out["censor_note"] = (
        "every panel is censored, a compared stable range reaching the top of the learning-rate grid, so each "
        "value is a bound" if values.get("all_censored") else
        f"the {_count(values.get('point_panels'))} uncensored panels alone give "
        f"{number(float(values['point_estimate']), 2)}"
        if _is_number(values.get("point_estimate")) and math.isfinite(float(values["point_estimate"]))
        else "no panel is uncensored")
    pvalue = next((values[c] for c in ("pvalue_holm", "pvalue") if _is_number(values.get(c))
                   and math.isfinite(float(values[c]))), None)
    held = "Holm-adjusted " if "pvalue_holm" in values and pvalue is not None else ""
    out["test_note"] = (
        "" if pvalue is None else
        f"the {held}Wilcoxon test over the {values.get('unit') or 'units'} cannot go below p = "
        f"{number(float(values['min_p']), 2)} at this size and decides nothing" if values.get("underpowered") else
        f"{held}Wilcoxon p = {number(float(pvalue), 2)}")
    out["percent_ci"] = percent_interval_text(values)
    listed = values.get("values")
    if listed:
        out["power_note"] = f"{values.get('n')} {values.get('unit') or 'units'}, too few for an interval: {listed}"
    elif _is_number(values.get("min_p")):
        out["power_note"] = (f"over {values.get('n')} {values.get('unit') or 'units'} the smallest p-value the test "
                             f"can reach after correction is {number(float(values['min_p']), 2)}, above {ALPHA}")
    else:
        out["power_note"] = ""
    return out


# -- sentences --------------------------------------------------------------------------------------------------
_CITATION = re.compile(r"\[\[([^|\]]+)\|([^\]]+)\]\]")


def format_value(value: Any, spec: str, target: str) -> str:
    """One placeholder's text: numbers to 2 significant digits (or ``spec``), ``n/a`` where undefined."""
    if isinstance(value, bool | np.bool_):
        text = "yes" if value else "no"
    elif _is_number(value):
        value = float(value)
        if not math.isfinite(value):
            return "n/a"
        text = format(value, spec) if spec else number(value, 2)
        if target == "tex" and text.startswith("-"):
            return "$-$" + text[1:]
        return text
    else:
        text = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    # a text that lists numbers (a claim's per-unit values, its signs per optimizer) typesets their minus signs
    return _NEGATIVE.sub("$-$", tex_escape(text)) if target == "tex" else text


_NEGATIVE = re.compile(r"(?<![\w.$])-(?=\.?\d)")
"""A minus sign that starts a number in a text (not a hyphen: ``task-model``, ``1e-4``)."""


def render(template: str, values: Mapping[str, Any], target: str = "md") -> str:
    """A sentence for ``target`` (``tex``, ``md`` or ``text``) from a template and a row's values.

    An unknown placeholder is a KeyError naming it (a mistake in the claims file).
    """
    citations: list[tuple[str, str]] = []

    def cite(match: re.Match) -> str:
        citations.append((match.group(1), match.group(2)))
        return f"\x00{len(citations) - 1}\x00"

    template = _CITATION.sub(cite, template)
    pieces: list[str] = []
    code = False
    for literal, name, spec, _ in string.Formatter().parse(template):
        for i, part in enumerate(literal.split("`")):
            if i:
                code = not code
                pieces.append({"tex": r"\texttt{" if code else "}", "md": "`"}.get(target, ""))
            if target == "tex":
                part = "\x00".join(tex_escape(chunk) if j % 2 == 0 else chunk
                                   for j, chunk in enumerate(part.split("\x00")))
            pieces.append(part)
        if name is not None:
            if name == "ci" and name not in values:
                pieces.append(interval_text(values, target))
                continue
            if name not in values:
                raise KeyError(f"placeholder {{{name}}} is not a column of the row")
            pieces.append(format_value(values[name], spec, target))
    text = "".join(pieces)

    def cited(match: re.Match) -> str:
        key, words = citations[int(match.group(1))]
        return rf"\citet{{{key}}}" if target == "tex" else words

    return re.sub("\x00(\\d+)\x00", cited, text)


def _reads_interval(claim: Claim) -> bool:
    """Whether a claim's comparison reads an interval bound."""
    return bool(names(claim.claim) & {"low", "high", "low90", "high90"}) or bool(claim.equivalence)


def _no_direction(values: Mapping[str, Any]) -> bool:
    """Whether censoring leaves a row without a direction: every panel is censored (``all_censored``), or the
    estimate is neither a point nor a one-sided bound (``bound`` both) and its uncensored panels alone
    (``point_estimate``) do not share its sign."""
    if bool(values.get("all_censored")):
        return True
    if str(values.get("bound", "") or "") != "both":
        return False
    point, estimate = values.get("point_estimate"), values.get("estimate")
    return not (_defined(point) and _defined(estimate) and float(point) * float(estimate) > 0)


def _judge(claim: Claim, values: dict[str, Any]) -> tuple[str, str]:
    """A claim's status and sentence template on a measured row's ``values`` (the rules of the module docstring),
    before the headline correction."""
    if _reads_interval(claim) and _no_direction(values):
        return CENSORED, GENERIC["censored"]
    tested = bool(names(claim.claim) & set(PVALUES))
    if (tested and bool(values.get("underpowered"))) or (
            _reads_interval(claim) and values.get("values") and not _defined(values.get("low"))):
        return UNDERPOWERED, claim.underpowered
    if claim.equivalence:  # undefined without a 90% interval: the claim is then not measured
        values["equivalent"] = (within_margin(float(values["low90"]), float(values["high90"]), float(values["margin"]))
                                if _defined(values.get("low90")) and _defined(values.get("high90")) else None)
    verdict = evaluate(claim.claim, values)
    if verdict is None:
        return NOT_MEASURED, claim.missing
    if claim.equivalence:
        verdict = verdict and values["equivalent"]
        excluded = evaluate("low > 0 or high < 0", values)
        status = "holds" if verdict else "fails" if excluded else INCONCLUSIVE
    else:
        status = "holds" if verdict else "fails"
    template = {"holds": claim.holds, "fails": claim.fails, INCONCLUSIVE: claim.inconclusive}[status]
    for when, text in claim.cases:
        if evaluate(when, values):
            template = text
            break
    return status, template


def _outcome(claim: Claim, tables: Mapping[str, pd.DataFrame], margins: Mapping[str, float],
             selector: Mapping[str, Any] | None = None) -> Outcome:
    """One claim's outcome on its row (or on the row of ``selector``), before the headline correction."""
    row = find_row(tables.get(claim.function), claim.row if selector is None else selector)
    stated = {f"margin_{key}": value for key, value in margins.items()}
    if claim.equivalence:
        if claim.equivalence not in margins:
            raise ValueError(f"claim {claim.id}: margin {claim.equivalence!r} of {claim.question} is not declared; "
                             "pass the questions claims.load gives")
        stated["margin"] = margins[claim.equivalence]
    values = derived({**stated, **(row or {})})
    if row is None or not _defined(row.get("estimate")):
        status, template = NOT_MEASURED, claim.missing
    elif bool(row.get("opposite_signs")) and str(row.get("optimizer", "")) == "all" and selector is None:
        return _per_optimizer(claim, tables, margins, values)
    else:
        status, template = _judge(claim, values)
    return Outcome(claim, status, values, sentences(claim, template, values))


def sentences(claim: Claim, template: str, values: Mapping[str, Any]) -> dict[str, str]:
    """``template`` rendered for every target, ``{subject}`` replaced by the claim's subject (itself a template)."""
    template = template.replace("{subject}", claim.subject)
    return {target: render(template, values, target) for target in ("tex", "md", "text")}


def _per_optimizer(claim: Claim, tables: Mapping[str, pd.DataFrame], margins: Mapping[str, float],
                   values: dict[str, Any]) -> Outcome:
    """A claim on a pooled row whose optimizers' effects have opposite signs, stated per optimizer: each
    optimizer's row judged and rendered on its own, the pooled mean not claimed."""
    table = tables[claim.function]
    selector = {k: v for k, v in claim.row.items() if k not in ("optimizer", "level")}
    optimizers = [str(o) for o in dict.fromkeys(table["optimizer"].astype(str)) if o != "all"]
    parts = []
    levels = [claim.row["level"], "optimizer"] if "level" in claim.row else [None]
    for optimizer in optimizers:
        for level in levels:
            chosen = {**selector, "optimizer": optimizer, **({"level": level} if level else {})}
            if find_row(table, chosen) is not None:
                parts.append((optimizer, _outcome(claim, tables, margins, chosen)))
                break
    sentence = {}
    for target in ("tex", "md", "text"):
        lead = render("Stated per optimizer, whose effects have opposite signs (their pooled mean is not claimed). ",
                      values, target)
        sentence[target] = lead + " ".join(render(f"With {o}: ", values, target) + inner.sentence[target]
                                           for o, inner in parts)
    values["per_optimizer"] = {o: inner.status for o, inner in parts}
    return Outcome(claim, PER_OPTIMIZER, values, sentence)


def claim_pvalue(outcome: Outcome) -> float | None:
    """The p-value of a claim's test: the one its comparison reads (``pvalue_holm``, ``pvalue``), else, for a
    claim on an interval, the p-value that interval implies (``pvalue_interval``); None where the row has none."""
    read = names(outcome.claim.claim)
    for column in (*(c for c in ("pvalue_holm", "pvalue") if c in read), "pvalue_interval"):
        if outcome.number(column) is not None:
            return outcome.number(column)
    return None


def correct_headlines(outcomes: Sequence[Outcome]) -> int:
    """Correct the headline claims together for multiplicity: Holm over their tests' p-values
    (:func:`claim_pvalue`); each gets ``pvalue_family`` and ``family_size``; a directional headline claim (one
    reading a p-value, or holding on an interval that excludes 0) that held with an adjusted p-value of 0.05 or
    more fails (its ``fails`` sentence). Returns the family's size (the headline claims with a test)."""
    family = [o for o in outcomes if o.claim.headline and o.status in ("holds", "fails", INCONCLUSIVE)
              and claim_pvalue(o) is not None]
    for outcome, adjusted in zip(family, holm([claim_pvalue(o) for o in family]), strict=True):
        outcome.values["pvalue_family"] = float(adjusted)
        outcome.values["family_size"] = len(family)
        directional = bool(names(outcome.claim.claim) & set(PVALUES)) or evaluate("low > 0 or high < 0",
                                                                                  outcome.values)
        if outcome.status == "holds" and not outcome.claim.equivalence and directional and adjusted >= ALPHA:
            outcome.status = "fails"
            outcome.sentence = sentences(outcome.claim, outcome.claim.fails, outcome.values)
    return len(family)


def evaluate_claims(tables: Mapping[str, pd.DataFrame], claims: Sequence[Claim],
                    declared: Mapping[str, Question] | None = None) -> list[Outcome]:
    """Every claim's outcome on the question tables (``analysis.questions.answer_all``), the rules of the module
    docstring applied, the headline claims corrected together (:func:`correct_headlines`).

    A claim reads its row's values and its question's margins as ``margin_<name>``
    (``declared``: the questions by id, as :func:`load` gives them; by default the registry's).
    """
    declared = by_id() if declared is None else declared
    outcomes = [_outcome(claim, tables, declared[claim.question].margins) for claim in claims]
    correct_headlines(outcomes)
    return outcomes


# -- outputs ----------------------------------------------------------------------------------------------------
def claims_tex(outcomes: Sequence[Outcome]) -> str:
    """The text of claims.tex: ``\\benchclaim{id}`` sentences and ``\\benchdef`` numbers of every claim."""
    lines = [
        "% Generated by `python -m analysis.numbers` from paper/claims.yaml; do not edit.",
        "% \\benchclaim{<id>}: the sentence of a claim, for its outcome on this sweep;",
        "% \\benchnum{claim-<id>-estimate|low|high|n|status}: its numbers.",
        r"\providecommand{\benchdef}[2]{\expandafter\def\csname bench@#1\endcsname{#2}}",
        r"\providecommand{\benchclaimdef}[2]{\expandafter\def\csname benchclaim@#1\endcsname{#2}}",
        r"\providecommand{\benchclaim}[1]{\ifcsname benchclaim@#1\endcsname\csname benchclaim@#1\endcsname"
        r"\else\textbf{??}\PackageWarning{bench}{Undefined claim `#1' (not in claims.tex)}\fi}",
        "",
    ]
    size = sum("pvalue_family" in o.values for o in outcomes)
    lines.append(f"\\benchdef{{claims-headline-family}}{{{size}}}")
    lines.append(f"\\benchdef{{claims-headline-correction}}{{{HEADLINE_CORRECTION}}}")
    lines.append("\\benchdef{claims-headline-note}{The " + str(size) + " headline claims that rest on a test are "
                 "corrected together for multiplicity (" + HEADLINE_CORRECTION + "); each holds only where its "
                 "adjusted p-value is below " + str(ALPHA) + ".}")
    for outcome in outcomes:
        key = outcome.claim.id
        lines.append(f"\\benchclaimdef{{{key}}}{{{outcome.sentence['tex']}}}")
        for name in ("estimate", "low", "high", "n"):
            lines.append(f"\\benchdef{{claim-{key}-{name}}}{{{format_value(outcome.values.get(name), '', 'tex')}}}")
        lines.append(f"\\benchdef{{claim-{key}-status}}{{{tex_escape(outcome.status)}}}")
    return "\n".join(lines) + "\n"


def _json_value(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def claims_json(outcomes: Sequence[Outcome], sweep: str) -> dict:
    """The machine-readable outcomes: per claim its id, question, status, holds, numbers, sentence and row."""
    return {"sweep": sweep, "claims": [{
        "id": o.claim.id, "question": o.claim.question, "status": o.status, "holds": o.holds,
        "estimate": _json_value(o.values.get("estimate")), "low": _json_value(o.values.get("low")),
        "high": _json_value(o.values.get("high")), "n": _json_value(o.values.get("n")),
        "unit": _json_value(o.values.get("unit")), "pvalue_family": _json_value(o.values.get("pvalue_family")),
        "sentence": o.sentence["md"], "figure": o.claim.figure,
        "function": o.claim.function, "row": dict(o.claim.row),
    } for o in outcomes]}


def flips(previous: Mapping[str, Any] | None, outcomes: Sequence[Outcome]) -> list[str]:
    """Warning lines for claims whose outcome changed against ``previous`` (a claims.json document)."""
    if not previous:
        return []
    before = {entry["id"]: entry.get("holds") for entry in previous.get("claims", [])}
    words = {True: "held", False: "failed", None: "was not measured"}
    now_words = {True: "holds now", False: "fails now"}
    lines = []
    for outcome in outcomes:
        key = outcome.claim.id
        if key not in before or before[key] == outcome.holds:
            continue
        if before[key] is None:
            continue  # newly measured: nothing was claimed before
        now = now_words[outcome.holds] if outcome.holds is not None else f"{outcome.status} now"
        lines.append(f"warning: claim {key} flipped: {words[before[key]]} before, {now}")
    return lines


def outcome_text(outcome: Outcome) -> str:
    """A claim's outcome in words: its status (``holds``, ``fails``, ``inconclusive``, ...), and for a claim stated
    per optimizer the status of each (``per optimizer (sgd: holds; adam: censored)``)."""
    inner = outcome.values.get("per_optimizer") if outcome.status == PER_OPTIMIZER else None
    if not inner:
        return outcome.status
    return f"{outcome.status} ({'; '.join(f'{optimizer}: {status}' for optimizer, status in inner.items())})"


def seed_set_flips(discovery: Sequence[Outcome], replication: Sequence[Outcome]) -> list[tuple[Outcome, Outcome]]:
    """The claims whose outcome the replication changes: for every claim of ``discovery`` (its outcomes on the
    runs of the config's ``seeds``) whose outcome on ``replication`` (the same claims on its ``replication_seeds``)
    differs (:func:`outcome_text`: the status, and per optimizer each optimizer's), the two outcomes, in the
    order of ``discovery``. A claim that held and fails, or that held and is inconclusive, underpowered or not
    measured on the replication seeds, is such a flip."""
    again = {outcome.claim.id: outcome for outcome in replication}
    missing = [outcome.claim.id for outcome in discovery if outcome.claim.id not in again]
    if missing:
        raise ValueError(f"claim {missing[0]}: not evaluated on the replication seeds; pass the same claims for both")
    return [(outcome, again[outcome.claim.id]) for outcome in discovery
            if outcome_text(outcome) != outcome_text(again[outcome.claim.id])]


def read_previous(path: Path | str | None) -> dict | None:
    """A previous claims.json, or None where there is none or it cannot be read."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Written:
    """What :func:`write` wrote and found: the paths, the outcomes and the flip warnings."""

    tex: Path
    json: Path
    outcomes: list[Outcome]
    warnings: list[str]

    def summary(self) -> list[str]:
        """One line per claim: ``claim <id>: holds|fails|not measured``."""
        return [f"claim {o.claim.id}: {o.status}" for o in self.outcomes]


def write(tables: Mapping[str, pd.DataFrame], out: Path | str, sweep: str, claims_file: Path | str = CLAIMS_FILE,
          reference: Path | str | None = None) -> Written:
    """Evaluate the claims on ``tables``, write ``claims.tex`` and ``claims.json`` into ``out``.

    Flips are judged against ``reference`` (a claims.json, e.g. a committed
    one) or, by default, the ``claims.json`` already at ``out`` from the
    previous build (read before it is replaced).
    """
    from bench.atomic import write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    declared, claims = load(claims_file)
    outcomes = evaluate_claims(tables, claims, declared)
    tex, document = out / paths.CLAIMS_TEX, out / paths.CLAIMS_RECORD
    previous = read_previous(reference if reference is not None else document)
    write_text(tex, claims_tex(outcomes))
    write_text(document, json.dumps(claims_json(outcomes, sweep), indent=1) + "\n")
    return Written(tex, document, outcomes, flips(previous, outcomes))


def effect_and_interval(outcome: Outcome, target: str = "md") -> tuple[str, str]:
    """A claim's short effect and its interval for ``target`` (``md``, ``tex`` or ``text``), as the findings
    table and the abstract quote them: ``--`` where not measured; per optimizer where the claim is stated
    per optimizer; the units' values where they are too few for an interval."""
    if outcome.status == NOT_MEASURED:
        return "--", "--"
    if outcome.status == PER_OPTIMIZER:
        return f"per optimizer: {format_value(outcome.values.get('signs', ''), '', target)}", "--"
    effect = render(outcome.claim.effect, outcome.values, target)
    if _defined(outcome.values.get("low")):
        return effect, render(outcome.claim.interval, outcome.values, target)
    values = outcome.values.get("values")
    return effect, f"values: {format_value(str(values), '', target)}" if values else "--"


FLIPPED = "flipped"
"""The mark of a claim whose outcome differs between the two seed sets (:func:`seed_set_flips`)."""


def findings_markdown(outcomes: Sequence[Outcome], declared: Mapping[str, Question] | None = None,
                      headline_only: bool = True, replication: Sequence[Outcome] | None = None) -> str:
    """The answers as a Markdown table: question (id and title, of ``declared``), answer sentence, effect,
    95% interval (the units' values where there are too few for one), figure stem; with ``replication`` (the
    same claims evaluated on the replication seeds), a last column with each claim's outcome on them
    (:func:`outcome_text`), ``**flipped**: `` before it where it differs from that of ``outcomes``.

    One row per question (its ``headline`` claim, else its first) or, with
    ``headline_only=False``, one per claim.
    """
    declared = by_id() if declared is None else declared
    chosen = list(outcomes)
    if headline_only:
        chosen = []
        for question in dict.fromkeys(o.claim.question for o in outcomes):
            own = [o for o in outcomes if o.claim.question == question]
            chosen.append(next((o for o in own if o.claim.headline), own[0]))
    columns = ["question", "answer", "effect", "95% CI", "figure"]
    if replication is not None:
        again = {outcome.claim.id: outcome for outcome in replication}
        flipped = {first.claim.id for first, _ in seed_set_flips(outcomes, replication)}
        columns.append("on the replication seeds")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for outcome in chosen:
        title = declared[outcome.claim.question].title if outcome.claim.question in declared else ""
        effect, interval = effect_and_interval(outcome, "md")
        figure = f"`{outcome.claim.figure}`" if outcome.claim.figure else ""
        cells = [f"{outcome.claim.question}: {title}".strip(": "), outcome.sentence["md"], effect, interval, figure]
        if replication is not None:
            mark = f"**{FLIPPED}**: " if outcome.claim.id in flipped else ""
            cells.append(mark + outcome_text(again[outcome.claim.id]))
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
