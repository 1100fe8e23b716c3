"""Sensitive-content protection as configured in the database: term lists, policies per stage, KB and
role, and what ingest and answering apply (rag/sensitive holds the detectors and the policy engine)."""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.errors import ErrorCode, ZhikuError
from app.models import PolicyStage, Role, SensitivePolicy, SensitiveTerm
from rag.sensitive import Action, Finding, Policy, Protection, Term, TermMatcher
from rag.sensitive.terms import SEVERITIES

SECRET_KINDS = ("API_KEY", "PRIVATE_KEY", "PASSWORD", "SECRET")
# What a fresh install does before an admin sets anything. Ingest stores credentials redacted (no
# reader needs a key that leaked into a wiki page) and keeps the rest raw, so that one role may be
# shown what another only sees masked. Answers mask personal numbers, redact credentials and listed
# terms, and leave contact data and markings alone.
BUILTIN_ACTIONS: dict[PolicyStage, dict[str, Action]] = {
    PolicyStage.INGEST: {kind: Action.REDACT for kind in SECRET_KINDS},
    PolicyStage.ANSWER: {
        **{kind: Action.REDACT for kind in SECRET_KINDS},
        **{kind: Action.MASK for kind in ("CN_ID", "BANK_CARD", "IBAN", "CN_PASSPORT")},
        "TERM": Action.REDACT,
    },
}
_STRICTNESS = (Action.ALLOW, Action.MASK, Action.REDACT, Action.BLOCK)


def _parse_action(value: str) -> Action:
    try:
        return Action(value)
    except ValueError:
        raise ZhikuError(ErrorCode.BAD_REQUEST,
                         f"unknown action {value!r}: use one of {[a.value for a in Action]}") from None


def _policy_of(row: SensitivePolicy | None, stage: PolicyStage) -> Policy:
    """A row overrides the built-in actions kind by kind: setting TERM:project to block keeps ID
    masking; an admin who wants a built-in kind shown sets it to allow."""
    if row is None:
        return Policy(BUILTIN_ACTIONS[stage])
    actions = {**BUILTIN_ACTIONS[stage], **{kind: Action(action) for kind, action in row.actions.items()}}
    return Policy(actions, Action(row.default_action))


def _scope_rank(row: SensitivePolicy, kb_id: int | None, role: Role | None) -> int | None:
    """How specific a row is for (kb_id, role); None when it does not apply."""
    if row.kb_id is not None and row.kb_id != kb_id:
        return None
    if row.role is not None and row.role != role:
        return None
    return 2 * (row.kb_id is not None) + (row.role is not None)


def policy_for(session: Session, stage: PolicyStage, kb_id: int | None, role: Role | None = None) -> Policy:
    """The most specific policy row for the scope: (kb, role) > (kb, any) > (any, role) > (any, any)."""
    rows = session.scalars(select(SensitivePolicy).where(SensitivePolicy.stage == stage)).all()
    ranked = [(rank, row) for row in rows if (rank := _scope_rank(row, kb_id, role)) is not None]
    return _policy_of(max(ranked, key=lambda pair: pair[0])[1] if ranked else None, stage)


def strictest(policies: Sequence[Policy]) -> Policy:
    """One policy for a question over several KBs: every kind gets the strictest action of any."""
    def pick(actions: Iterable[Action]) -> Action:
        return max(actions, key=_STRICTNESS.index)
    kinds = {kind for policy in policies for kind in policy.actions}
    return Policy({kind: pick(p.actions.get(kind, p.default) for p in policies) for kind in kinds},
                  pick(p.default for p in policies))


def set_policy(session: Session, *, stage: PolicyStage, kb_id: int | None, role: Role | None,
               actions: dict[str, str], default_action: str) -> SensitivePolicy:
    if stage is PolicyStage.INGEST and role is not None:
        raise ZhikuError(ErrorCode.BAD_REQUEST, "an ingest policy applies to every reader: leave role empty")
    checked = {kind: _parse_action(action).value for kind, action in actions.items()}
    default = _parse_action(default_action).value
    row = session.scalars(select(SensitivePolicy).where(
        SensitivePolicy.stage == stage,
        SensitivePolicy.kb_id.is_(None) if kb_id is None else SensitivePolicy.kb_id == kb_id,
        SensitivePolicy.role.is_(None) if role is None else SensitivePolicy.role == role,
    )).first()
    if row is None:
        row = SensitivePolicy(stage=stage, kb_id=kb_id, role=role)
        session.add(row)
    row.actions, row.default_action = checked, default
    session.flush()
    return row


# --- term lists -------------------------------------------------------------------------------

def parse_term_file(content: bytes, *, filename: str, category: str, severity: str) -> list[Term]:
    """TXT: one term per line (`#` comments). CSV: columns term[,category[,severity]], a header
    row optional. `category`/`severity` fill what a line leaves out."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ZhikuError(ErrorCode.BAD_REQUEST, f"{filename}: a term list must be UTF-8 text") from None
    if not filename.lower().endswith(".csv"):
        return [Term(line.strip(), category, severity) for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    terms = []
    for row in csv.reader(io.StringIO(text)):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0] or cells[0].startswith("#") or cells[0].lower() == "term":
            continue
        terms.append(Term(cells[0], (cells[1] if len(cells) > 1 and cells[1] else category),
                          (cells[2] if len(cells) > 2 and cells[2] else severity)))
    return terms


def import_terms(session: Session, terms: list[Term]) -> dict[str, int]:
    """Adds new (term, category) pairs and updates the severity of existing ones."""
    for term in terms:
        if term.severity not in SEVERITIES:
            raise ZhikuError(ErrorCode.BAD_REQUEST,
                             f"term {term.text!r}: severity must be one of {list(SEVERITIES)}")
        if not term.text.strip() or len(term.text) > 200 or not term.category or len(term.category) > 64:
            raise ZhikuError(ErrorCode.BAD_REQUEST,
                             f"term {term.text[:40]!r}: 1-200 characters, category 1-64 characters")
    existing = {(t.term, t.category): t for t in session.scalars(select(SensitiveTerm))}
    added = updated = 0
    for term in {(t.text.strip(), t.category): t for t in terms}.values():
        row = existing.get((term.text.strip(), term.category))
        if row is None:
            session.add(SensitiveTerm(term=term.text.strip(), category=term.category, severity=term.severity))
            added += 1
        elif row.severity != term.severity:
            # Replaced rather than updated: the matcher cache is keyed on ids (see `term_matcher`).
            session.delete(row)
            session.flush()
            session.add(SensitiveTerm(term=row.term, category=row.category, severity=term.severity))
            updated += 1
    session.flush()
    return {"added": added, "updated": updated}


def delete_term(session: Session, term_id: int) -> None:
    session.execute(delete(SensitiveTerm).where(SensitiveTerm.id == term_id))


_matcher_lock = threading.Lock()
_matcher_cache: dict[str, tuple[tuple, TermMatcher | None]] = {}


def term_matcher(session: Session) -> TermMatcher | None:
    """The automaton over every listed term, rebuilt only when the list changed. Rows are only ever
    added or deleted (never updated), so (count, max id, sum of ids) identifies the list's state."""
    key = tuple(session.execute(
        select(func.count(SensitiveTerm.id), func.max(SensitiveTerm.id), func.sum(SensitiveTerm.id))).one())
    url = str(session.get_bind().url)
    with _matcher_lock:
        cached = _matcher_cache.get(url)
        if cached is not None and cached[0] == key:
            return cached[1]
    rows = session.scalars(select(SensitiveTerm)).all()
    matcher = TermMatcher(Term(r.term, r.category, r.severity) for r in rows) if rows else None
    with _matcher_lock:
        _matcher_cache[url] = (key, matcher)
    return matcher


# --- what ingest and answering apply -----------------------------------------------------------

def ingest_protection(session: Session, kb_id: int) -> Protection:
    return Protection(policy_for(session, PolicyStage.INGEST, kb_id), term_matcher(session))


def answer_protection(session: Session, kb_ids: Sequence[int], role: Role | None) -> Protection:
    policies = [policy_for(session, PolicyStage.ANSWER, kb_id, role) for kb_id in kb_ids] or [
        policy_for(session, PolicyStage.ANSWER, None, role)]
    return Protection(strictest(policies), term_matcher(session))


def count_kinds(findings: Iterable[Finding]) -> dict[str, int]:
    return dict(Counter(f.kind for f in findings))

