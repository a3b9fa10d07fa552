"""Answers to questions: from an answers file (`--answers FILE`) or an example, checked against the questions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diagnose.errors import ConfigError
from diagnose.rulebook.model import Question
from diagnose.yamlio import load_yaml


def check_answers(raw: Mapping[str, Any], questions: Mapping[str, Question], where: Any = None) -> dict[str, str]:
    def at(*keys: Any) -> str | None:
        return where.at(*keys) if where is not None else None

    answers: dict[str, str] = {}
    for qid, value in raw.items():
        question = questions.get(qid)
        if question is None:
            raise ConfigError(f"unknown question {qid!r} (known: {', '.join(sorted(questions))})", at(qid, "<key>"))
        if isinstance(value, bool):  # YAML 1.1 reads a bare yes/no as a boolean
            value = "yes" if value else "no"
        if not isinstance(value, str):
            raise ConfigError(f"the answer to {qid} must be a string", at(qid))
        if value not in question.choices:
            raise ConfigError(f"{value!r} is not a choice for {qid} ({', '.join(question.choices)})", at(qid))
        answers[qid] = value
    return answers


def load_answers(path: Path | str, questions: Mapping[str, Question]) -> dict[str, str]:
    data, lines = load_yaml(path, error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("an answers file is a mapping of question id to answer", lines.at())
    return check_answers(data, questions, lines)
