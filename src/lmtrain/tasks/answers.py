"""How a chat task asks and what counts as its answer, as text (pure functions).

- chat_choice: the question, then each choice on its own line with its letter ("- Paris=A"), then "Respond only with
  the letter of the correct answer." (nanochat's ChatCORE wording); a CORE file's "Question: " prefix is dropped;
- chat_answer: the question alone; the answer is the number after the last "####" in the reply (GSM8K's own mark),
  else the reply's last number; numbers compare after commas, a leading "$" and a trailing "." are dropped, so
  "1,000" and "1000.00" are the same answer.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

LETTERS = "ABCDEFGHIJ"
"""The letters choices are named by, in order (at most ten choices)."""
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_MARKED = re.compile(r"####\s*(-?\$?\d[\d,]*(?:\.\d+)?)")


def choice_message(query: str, choices: list[str]) -> str:
    """The user message of a lettered multiple-choice question."""
    question = query.removeprefix("Question:").strip()
    lines = "".join(f"- {choice}={letter}\n" for letter, choice in zip(LETTERS, choices))
    return f"Multiple Choice question: {question}\n{lines}\nRespond only with the letter of the correct answer."


def final_number(text: str) -> str | None:
    """The answer a reply gives: the number after its last '####', else its last number; normalised (no commas, no
    '$', no trailing zeros after a decimal point); None when it holds no number."""
    marked = _MARKED.findall(text)
    found = marked[-1] if marked else (_NUMBER.findall(text) or [None])[-1]
    if found is None:
        return None
    digits = found.replace(",", "").replace("$", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))
