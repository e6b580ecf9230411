"""Find personal numbers in Chinese ASR text, in every form the ASR writes them.

Why a normalising pass and not an NLP stack or a numeral converter: a spoken number reaches
the transcript as ASCII digits (``13800001234``), digits split by spaces or dashes
(``138 0000 1234``, ``138-0000-1234``), full-width digits (``１３８００００１２３４``) or
Chinese numerals read digit by digit, with ``幺`` for 1, ``两`` for 2 and ``零``/``〇`` for 0
(``一三八 零零零零 幺二三四``). Each of those characters maps to one digit, so one regular
expression finds the *runs* of digit characters (with at most two separators between two
digits), each run is read as its digit string with the index of every digit kept, and the
digit string is classified by the structure of each kind of number (prefixes, lengths,
the ID card's date and checksum, the bank card's Luhn digit). A match is returned as
character spans of the original text, so masking keeps every offset.

Positional numerals (``三千五百``, ``十点半``, ``两万``) never form a run: ``十百千万`` are not
digits, so amounts, dates, times and durations stay short runs and are never classified.
``cn2an`` (numeral → number) answers a different question (it reads ``三千五百`` as 3500:
exactly what must *not* be redacted), and ``phonenumbers`` neither reads Chinese numerals
nor knows ID or bank cards; measured, neither is needed (``benchmarks/pii.py``).

Kinds: ``mobile`` (``1[3-9]`` + 9 digits, optionally after ``86``/``+86``), ``landline``
(area code ``0`` + 2–3 digits, then 7–8 digits: 10–12 digits starting with ``0``),
``id_card`` (18 characters: region, a valid birth date, the ISO 7064 checksum, ``X`` last),
``bank_card`` (16–19 digits starting 3–6 or 9 with a valid Luhn digit), ``email``, and
``service`` (``400``/``800`` + 7 digits, ``95`` + 3–6 digits: a company's hotline, kept
unless the caller asks for them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

#: Character → digit, for every way ASR writes a digit read out one by one.
DIGITS: dict[str, str] = {}
for _i in range(10):
    DIGITS[str(_i)] = str(_i)
    DIGITS[chr(0xFF10 + _i)] = str(_i)  # full-width ０-９
for _chars, _digit in (
    ("零〇○Ｏ", "0"),
    ("一幺壹", "1"),
    ("二两贰", "2"),
    ("三叁", "3"),
    ("四肆", "4"),
    ("五伍", "5"),
    ("六陆", "6"),
    ("七柒", "7"),
    ("八捌", "8"),
    ("九玖", "9"),
):
    for _c in _chars:
        DIGITS[_c] = _digit
#: The ID card's last character may be X (written in any case or width).
CHECK_X = "XxＸｘ"
#: What may stand between two digits of one number (at most two in a row).
SEPARATORS = " \u3000\u00a0\t-－‐‑–—_,，、"

_D = "".join(sorted(DIGITS))
_S = re.escape(SEPARATORS)
#: A run: at least 7 digit characters, at most two separators between two of them, an X last.
_RUN = re.compile(f"[{_D}](?:[{_S}]{{0,2}}[{_D}]){{6,}}(?:[{_S}]{{0,2}}[{CHECK_X}])?")
#: At least 5 (``95588``: a service number, looked for only when asked).
_RUN5 = re.compile(f"[{_D}](?:[{_S}]{{0,2}}[{_D}]){{4,}}(?:[{_S}]{{0,2}}[{CHECK_X}])?")
#: At least 2 digit characters (a run that may continue in the next sentence).
_SHORT_RUN = re.compile(f"[{_D}](?:[{_S}]{{0,2}}[{_D}])+(?:[{_S}]{{0,2}}[{CHECK_X}])?")
#: Bounded repeats everywhere: a hostile answer (a long word before " at " with no domain after)
#: must cost linear time, not quadratic backtracking.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}(?:[ \u3000][A-Za-z0-9._%+\-]{1,64}){0,3}"
    r"[ \u3000]{0,3}(?:[@＠]|艾特|\bat\b)"
    r"[ \u3000]{0,3}[A-Za-z0-9\-]{1,63}(?:[ \u3000]{0,3}(?:\.|。|点|．|\bdot\b)[ \u3000]{0,3}[A-Za-z0-9\-]{1,63}){1,8}",
    re.IGNORECASE,
)
#: Cheap precheck for an e-mail address (the address pattern itself backtracks on long words).
_MAIL_MARK = re.compile(r"[@＠]|艾特|\bat\b", re.IGNORECASE)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_REGIONS = frozenset("1234568")
#: How many digits a number may pick up from the words around it (``我一`` before, ``一下`` after).
_TRIM = 2

#: A run of more characters is no number read out (hostile or garbled data): it is masked
#: whole instead of searched, which keeps the cost of any string linear.
_RUN_MAX = 1000
#: The lengths of the kinds (digits), and with the service numbers.
_LENGTHS = (10, 11, 12, 13, 16, 17, 18, 19)
_LENGTHS_SERVICE = (*_LENGTHS, 5, 6, 7, 8)
#: The longest unseparated run searched for numbers written back to back (four of them).
_SLIDE_MAX = 80

PERSONAL = frozenset({"mobile", "landline", "id_card", "bank_card", "email"})


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` holds a number of ``kind``."""

    start: int
    end: int
    kind: str


def luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def id_card(digits: str) -> bool:
    """18 characters: a region, a real birth date (1900–2099), and the checksum."""
    if len(digits) != 18 or digits[0] not in _ID_REGIONS or not digits[:17].isdigit():
        return False
    year, month, day = int(digits[6:10]), int(digits[10:12]), int(digits[12:14])
    if not 1900 <= year <= 2099:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    total = sum((ord(c) - 48) * w for c, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == digits[17].upper()


def kind_of(digits: str) -> str | None:
    """The kind of number ``digits`` (an X only last) is, or ``None``."""
    n = len(digits)
    if n == 18 and id_card(digits):
        return "id_card"
    if not digits.isdigit():
        return None
    head = digits[0]
    if n == 11 and head == "1" and digits[1] in "3456789":
        return "mobile"
    if n == 13 and digits.startswith("86") and digits[2] == "1" and digits[3] in "3456789":
        return "mobile"
    if head == "0":
        if 10 <= n <= 12 and digits[1] != "0":
            return "landline"
        return None
    if n == 10 and (digits.startswith("400") or digits.startswith("800")):
        return "service"
    if 5 <= n <= 8 and digits.startswith("95"):
        return "service"
    if 16 <= n <= 19 and head in "345369" and luhn(digits):
        return "bank_card"
    return None


def _digits_of(text: str, start: int, end: int) -> tuple[str, list[int]]:
    """The digits of ``text[start:end]`` and the index of each (separators skipped); a
    numeral's kind (Chinese or not) is ``_spoken``'s."""
    digits: list[str] = []
    where: list[int] = []
    table = DIGITS
    for index in range(start, end):
        char = text[index]
        digit = table.get(char)
        if digit is None and char in CHECK_X:
            digit = "X"
        if digit is not None:
            digits.append(digit)
            where.append(index)
    return "".join(digits), where


def _spoken(text: str, where: list[int]) -> str:
    """``"c"`` for each digit written as a Chinese numeral, ``"a"`` for the others."""
    return "".join("a" if text[index] < "\u3000" or "\uff10" <= text[index] <= "\uff19" else "c" for index in where)


def _groups(where: list[int]) -> list[tuple[int, int]]:
    """Digit positions → groups ``(first, last+1)`` of digit indexes not split by a separator."""
    groups: list[tuple[int, int]] = []
    first = 0
    for k in range(1, len(where)):
        if where[k] != where[k - 1] + 1:
            groups.append((first, k))
            first = k
    groups.append((first, len(where)))
    return groups


def _classify(
    digits: str, lo: int, hi: int, wanted: frozenset[str], spoken: str, edges: tuple[bool, bool], first: int
) -> tuple[int, int, str] | None:
    """``digits[lo:hi]`` as a number of a wanted kind, allowing up to ``_TRIM`` Chinese numerals
    picked up from the words around it (``我一``, ``一下``) at an end of the run (``edges``);
    the digit range matched. ``spoken[k]`` is ``"c"`` where digit ``k`` is a Chinese numeral;
    ``first`` is the length of the first group (0: one group), a landline's area code when
    the number is written in groups (``03-05 2024`` is a date, not ``0305 2024…``)."""
    lo_cuts = [c for c in range(0, _TRIM + 1) if c == 0 or (edges[0] and spoken[lo : lo + c] == "c" * c)]
    hi_cuts = [c for c in range(0, _TRIM + 1) if c == 0 or (edges[1] and spoken[hi - c : hi] == "c" * c)]
    for cut_lo in lo_cuts:
        for cut_hi in hi_cuts:
            a, b = lo + cut_lo, hi - cut_hi
            if b - a < 5:
                continue
            kind = kind_of(digits[a:b])
            if kind is not None and kind in wanted:
                if kind == "landline" and first and first - cut_lo not in (3, 4):
                    continue
                return a, b, kind
    return None


def match_digits(
    digits: str, where: list[int], wanted: frozenset[str], spoken: str | None = None
) -> list[tuple[int, int, str]]:
    """Numbers in one run: spans of whole groups (a separator is a boundary), longest first
    from the left; each match as ``(first digit, last digit + 1, kind)`` indexes of ``where``."""
    spoken = spoken if spoken is not None else "a" * len(digits)
    groups = _groups(where)
    #: where a group ends → its index: the groups a number starting at group i may end with are
    #: found by its possible lengths (a few lookups per group, whatever the run's length)
    ends = {end: j for j, (_, end) in enumerate(groups)}
    lengths = _LENGTHS_SERVICE if "service" in wanted else _LENGTHS
    final = len(groups) - 1
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        best: tuple[int, int, str] | None = None
        best_j = i
        start = groups[i][0]
        extra = range(0, 2 * _TRIM + 1) if i == 0 else range(0, 1)  # trimmed numerals only at the run's ends
        candidates = {ends[start + size + more] for size in lengths for more in extra if start + size + more in ends}
        if groups[final][1] - start <= 21 + _TRIM:
            candidates.add(final)
        for j in sorted(candidates, reverse=True):
            lo, hi = start, groups[j][1]
            if hi - lo > 21 + _TRIM or hi - lo < 5:
                continue
            first = groups[i][1] - groups[i][0] if j > i else 0
            if i and j != final:  # inside the run: no numeral picked up from words, no trim
                kind = kind_of(digits[lo:hi])
                ok = kind is not None and kind in wanted and not (kind == "landline" and first and first not in (3, 4))
                hit = (lo, hi, kind) if ok and kind is not None else None
            else:
                hit = _classify(digits, lo, hi, wanted, spoken, (i == 0, j == final), first)
            if hit is not None:
                best, best_j = hit, j
                break
        if best is not None:
            found.append(best)
            i = best_j + 1
        else:
            i += 1
    if not found and len(groups) == 1 and 21 < len(digits) <= _SLIDE_MAX:
        # one long unseparated run: numbers written back to back; slide over it (a longer run
        # is not speech read out but data, e.g. an id: left as it is)
        k = 0
        while k < len(digits):
            for size in (18, 19, 16, 17, 11, 12, 10, 13):
                kind = kind_of(digits[k : k + size]) if k + size <= len(digits) else None
                if kind is not None and kind in wanted:
                    found.append((k, k + size, kind))
                    k += size - 1
                    break
            k += 1
    return found


class Detector:
    """Spans of personal numbers in a text; ``service`` numbers too when ``mask_service``."""

    def __init__(self, *, mask_service: bool = False) -> None:
        self.wanted = PERSONAL | {"service"} if mask_service else PERSONAL
        self._run = _RUN5 if mask_service else _RUN
        #: One C-level search says whether a text may hold anything at all (most strings of a
        #: result do not): a run of digits or an e-mail's mark.
        self.may_hold = re.compile(f"{self._run.pattern}|{_MAIL_MARK.pattern}", re.IGNORECASE).search

    def spans(self, text: str) -> list[Span]:
        if len(text) < 5 or not self.may_hold(text):
            return []
        found: list[Span] = []
        for run in self._run.finditer(text):
            if run.end() - run.start() > _RUN_MAX:  # not speech read out: masked whole, not searched
                found.append(Span(run.start(), run.end(), "long_run"))
                continue
            digits, where = _digits_of(text, run.start(), run.end())
            for lo, hi, kind in match_digits(digits, where, self.wanted, _spoken(text, where)):
                found.append(Span(where[lo], where[hi - 1] + 1, kind))
        if _MAIL_MARK.search(text):
            found.extend(Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
        return found

    def split_spans(self, first: str, second: str) -> tuple[list[Span], list[Span]]:
        """A number begun at the end of ``first`` and finished at the start of ``second`` (two
        consecutive sentences of one speaker): its part in each. Only the last run of
        ``first`` (ending within 2 characters of its end) and the first run of ``second``
        (starting within 2 characters of its start) are joined."""
        tail = None
        for found in _SHORT_RUN.finditer(first):
            tail = found
        if tail is None or len(first.rstrip("。.,，?？!！ 、")) - tail.end() > 2:
            return [], []
        head = _SHORT_RUN.search(second)
        if head is None or head.start() > 2:
            return [], []
        joined = first[tail.start() : tail.end()] + " " + second[head.start() : head.end()]
        digits, where = _digits_of(joined, 0, len(joined))
        cut = tail.end() - tail.start()
        a: list[Span] = []
        b: list[Span] = []
        for lo, hi, kind in match_digits(digits, where, self.wanted, _spoken(joined, where)):
            start, end = where[lo], where[hi - 1] + 1
            if start >= cut or end <= cut:
                continue  # wholly in one sentence: found there on its own
            a.append(Span(tail.start() + start, tail.end(), kind))
            b.append(Span(head.start(), head.start() + end - cut - 1, kind))
        return a, b


def mask(text: str, spans: list[Span]) -> str:
    """``text`` with every character of every span replaced by ``*`` (length kept)."""
    if not spans:
        return text
    chars = list(text)
    for span in spans:
        for index in range(span.start, span.end):
            chars[index] = "*"
    return "".join(chars)
