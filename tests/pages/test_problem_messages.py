"""The pages word every problem the API can answer in both languages: for each kind of
``broker.api.problems.problem_kinds``, a Japanese and an English title and detail in
messages.json (what common.js shows instead of the API's English)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import broker.api.app  # noqa: F401  (loads every consent error class problem_kinds walks)
from broker.api.problems import problem_kinds

MESSAGES = (
    Path(__file__).resolve().parents[2] / "broker" / "api" / "pages" / "static" / "messages.json"
)
#: Japanese script (kana, kanji, full-width forms).
JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def _messages() -> dict[str, dict[str, str]]:
    messages: dict[str, dict[str, str]] = json.loads(MESSAGES.read_text(encoding="utf-8"))
    return messages


def test_every_problem_kind_has_a_japanese_and_an_english_title_and_detail() -> None:
    messages = _messages()
    missing = [
        f"{lang}: problem.{kind}.{part}"
        for kind in sorted(problem_kinds())
        for lang in ("ja", "en")
        for part in ("title", "detail")
        if not messages[lang].get(f"problem.{kind}.{part}", "").strip()
    ]
    assert missing == [], f"add to broker/api/pages/static/messages.json: {missing}"
    for kind in problem_kinds():
        for part in ("title", "detail"):
            ja, en = (
                messages["ja"][f"problem.{kind}.{part}"],
                messages["en"][f"problem.{kind}.{part}"],
            )
            assert JAPANESE.search(ja), (kind, part, ja)
            assert not JAPANESE.search(en), (kind, part, en)


def test_no_problem_text_is_left_for_a_kind_the_api_does_not_answer() -> None:
    # A renamed kind would otherwise leave its old texts behind, and the new one untranslated.
    kinds = problem_kinds()
    for lang, texts in _messages().items():
        stale = sorted(
            key for key in texts if key.startswith("problem.") and key.split(".")[1] not in kinds
        )
        assert stale == [], (lang, stale)
