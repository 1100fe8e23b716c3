"""QA sets on disk: the format of ../shared/evaldata/qa (questions.jsonl + corpus.jsonl, see its README)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class QASet:
    name: str
    questions: list[dict]
    passages: list[dict]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def is_qa_set(folder: Path) -> bool:
    return (folder / "questions.jsonl").is_file() and (folder / "corpus.jsonl").is_file()


def qa_set_dirs(paths: Iterable[Path]) -> list[Path]:
    """Each path is a QA set, or a folder of QA sets (every subfolder that is one, sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if is_qa_set(path):
            found.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if p.is_dir() and is_qa_set(p)) if path.is_dir() else []
        if not inside:
            raise FileNotFoundError(f"{path} holds no questions.jsonl + corpus.jsonl, nor folders that do")
        found += inside
    return found


def load_qa_set(folder: Path, limit: int | None = None, seed: int | None = None) -> QASet:
    """`limit` questions: the first ones, or with a `seed` a random sample of them (in file order). The
    files group questions by article and put unanswerable ones unevenly, so a sample is more typical."""
    questions = read_jsonl(folder / "questions.jsonl")
    if limit and seed is not None and limit < len(questions):
        keep = set(random.Random(seed).sample(range(len(questions)), limit))
        questions = [q for i, q in enumerate(questions) if i in keep]
    return QASet(folder.name, questions[:limit] if limit else questions, read_jsonl(folder / "corpus.jsonl"))


def passage_text(row: dict) -> str:
    """A passage as one text: its title line, then its text (what a plain pipeline would index)."""
    return f"{row['title']}\n{row['text']}".strip()


def question_text(question: dict) -> str:
    """The question as a reader is asked it: a multiple-choice question (C3) carries its choices,
    which are part of what is asked — "他们在谈论什么?" alone names nothing to look for."""
    choices = question.get("choices") or []
    if not choices:
        return question["question"]
    label = "选项" if question.get("language") == "zh" else "Options"
    return f"{question['question']}\n{label}: " + " / ".join(choices)
