"""Redact one output record (``records.to_record``'s dict) before it is encoded: ``QCFLOW_PII``.

Why on the record and not on the item or the line: the record is what every feed (results,
reviews) and every path (timer pass, callback, recovery of a lost part) writes, and its keys
are already the schema's, so the personal fields are named once (``recording.caller``…).

What happens in ``mask`` and ``hash`` mode:

- every string of the record is scanned (``detect.Detector``): each character of a personal
  number becomes ``*``, so lengths, keyword ``from``/``to`` offsets and sentence timings stay
  valid; a number split over two consecutive sentences of one speaker is masked in both, and
  the copies of those sentences (a hit's ``phrase``) and the keyword values inside a masked
  stretch are masked alike;
- the personal fields (``recording.caller``, ``recording.callee`` and ``QCFLOW_PII_FIELDS``)
  are redacted whole: ``*`` per character (``mask``), or ``HMAC-SHA256(key, value)`` in hex
  (``hash``; a phone number is hashed by its digits, so ``138-0000-1234`` and ``13800001234``
  join);
- the identity and time keys (``task_id``, ``call_id``, ``contact_id``, ``object_key``,
  ``recording.id``/``name``…) are kept: they are the exactly-once key and the join to the
  push ledger, CCC and the recordings bucket.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from qcflow.errors import ConfigError
from qcflow.pii.detect import Detector, Span, mask

#: Keys never rewritten: identities, join keys, times, numbers the schema counts on.
KEPT = frozenset(
    {
        "schema_version",
        "task_id",
        "status",
        "state",
        "call_id",
        "contact_id",
        "object_key",
        "upload_time",
        "harvested_at",
        "review_time",
        "primary_id",
        "call_time",
    }
)
#: Personal fields of the recording, always redacted whole.
RECORDING_FIELDS = ("caller", "callee")
_RECORDING_KEPT = frozenset({"id", "call_id", "name", "primary_id", "call_time"})


class Redactor:
    """One configured redaction; ``record(rec)`` rewrites a record in place and returns it."""

    def __init__(
        self,
        mode: str = "mask",
        *,
        key: bytes | None = None,
        fields: tuple[str, ...] = (),
        mask_service: bool = False,
    ) -> None:
        if mode not in ("mask", "hash", "off"):
            raise ConfigError(f"QCFLOW_PII: unknown mode {mode!r} (mask, hash or off)")
        if mode == "hash" and not key:
            raise ConfigError("QCFLOW_PII=hash needs QCFLOW_PII_KEY (or QCFLOW_PII_KEY_KMS_NAME)")
        self.mode = mode
        self._key = key
        self.detector = Detector(mask_service=mask_service)
        self._may_hold = self.detector.may_hold
        self.paths = frozenset(tuple(field.split(".")) for field in fields if "." in field)
        self.names = frozenset(field for field in fields if "." not in field)

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """From a ``PiiSettings`` slice (``settings.pii``)."""
        key = settings.key.get_secret_value().encode("utf-8") if settings.key is not None else None
        return cls(settings.mode, key=key, fields=settings.fields, mask_service=settings.service_numbers == "mask")

    def __repr__(self) -> str:  # never the key
        return f"Redactor(mode={self.mode!r})"

    @property
    def active(self) -> bool:
        return self.mode != "off"

    # ------------------------------------------------------------------ values
    def text(self, value: str) -> str:
        """Free text with every personal number masked."""
        if len(value) < 5 or not self._may_hold(value):
            return value
        return mask(value, self.detector.spans(value))

    def whole(self, value: Any) -> Any:
        """A personal field: masked whole, or its keyed hash."""
        if value is None or value == "":
            return value
        text = value if isinstance(value, str) else str(value)
        if self.mode == "hash":
            assert self._key is not None
            return hmac.new(self._key, canonical(text).encode("utf-8"), hashlib.sha256).hexdigest()
        if isinstance(value, (dict, list)):
            return None
        return "*" * len(text)

    # ------------------------------------------------------------------ records
    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "off":
            return record
        replaced = self._transcript(record.get("asr_result"))
        for key, value in record.items():
            if key in KEPT:
                continue
            if key == "recording" and type(value) is dict:
                self._recording(value)
            elif key == "hit_result":
                record[key] = self._hits(value, replaced)
            elif key == "asr_result":
                continue  # done above
            elif type(value) is str:
                record[key] = self._walk(value, (key,)) if self.names else self.text(value)
            elif type(value) is dict or type(value) is list:
                record[key] = self._walk(value, (key,))
        return record

    def _recording(self, recording: dict[str, Any]) -> None:
        for key, value in recording.items():
            if key in RECORDING_FIELDS:
                recording[key] = self.whole(value)
            elif key not in _RECORDING_KEPT:
                recording[key] = self._walk(value, ("recording", key))

    def _walk(self, value: Any, path: tuple[str, ...]) -> Any:
        kind = type(value)
        if not self.names and not self.paths:
            return self._scan(value) if kind is dict or kind is list else self.text(value) if kind is str else value
        if path[-1] in self.names or path in self.paths:
            return self.whole(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            for key, item in value.items():
                value[key] = self._walk(item, (*path, key))
            return value
        if kind is list:
            return [self._walk(item, path) for item in value]
        return value

    def _scan(self, value: Any) -> Any:
        """``_walk`` without fields to redact whole (the usual case): the strings of a dict or
        list masked in place, with no call for the numbers and short strings among them."""
        may_hold = self._may_hold
        if type(value) is dict:
            for key, item in value.items():
                kind = type(item)
                if kind is str:
                    if len(item) >= 5 and may_hold(item):
                        value[key] = mask(item, self.detector.spans(item))
                elif kind is dict or kind is list:
                    self._scan(item)
            return value
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if len(item) >= 5 and may_hold(item):
                    value[index] = mask(item, self.detector.spans(item))
            elif kind is dict or kind is list:
                self._scan(item)
        return value

    def _transcript(self, sentences: Any) -> dict[str, str]:
        """Mask ``asr_result`` in place, numbers split over two sentences of one speaker too;
        each changed sentence's original words → its masked words (for the hits' phrases)."""
        replaced: dict[str, str] = {}
        if type(sentences) is not list:
            return replaced
        texts: list[str | None] = []
        spans: list[list[Span]] = []
        roles: list[Any] = []
        detect = self.detector.spans
        for sentence in sentences:
            if type(sentence) is dict:
                words = sentence.get("words")
                roles.append(sentence.get("role"))
            else:
                words = None
                roles.append(None)
            if type(words) is str:
                texts.append(words)
                spans.append(detect(words))
            else:
                texts.append(None)
                spans.append([])
        for k in range(1, len(sentences)):
            a, b = texts[k - 1], texts[k]
            if a is None or b is None or roles[k - 1] != roles[k] or roles[k] is None:
                continue
            first, second = self.detector.split_spans(a, b)
            spans[k - 1].extend(first)
            spans[k].extend(second)
        for k, sentence in enumerate(sentences):
            if type(sentence) is not dict:
                sentences[k] = self._walk(sentence, ("asr_result",))
                continue
            if spans[k]:
                words = sentence["words"]
                replaced[words] = sentence["words"] = mask(words, spans[k])
            whole = self.names or self.paths
            for key, value in sentence.items():
                if key == "words" or key == "role":
                    continue
                if whole:
                    sentence[key] = self._walk(value, ("asr_result", key))
                elif type(value) is str:
                    sentence[key] = self.text(value)
                elif type(value) is dict or type(value) is list:
                    self._scan(value)
        return replaced

    def _hits(self, hits: Any, replaced: dict[str, str]) -> Any:
        """Every string masked; a phrase that is a masked sentence is masked like it, and a
        keyword whose ``from``/``to`` falls in a masked stretch of its phrase is masked there."""
        if type(hits) is not list:
            return self._walk(hits, ("hit_result",))
        for hit in hits:
            if type(hit) is not dict:
                continue
            for key, value in hit.items():
                if key != "hits" or type(value) is not list:
                    hit[key] = self._walk(value, ("hit_result", key))
                    continue
                for found in value:
                    if type(found) is dict:
                        self._found(found, replaced)
        return hits

    def _found(self, found: dict[str, Any], replaced: dict[str, str]) -> None:
        phrase = found.get("phrase")
        words: str | None = None
        masked_words: str | None = None
        if type(phrase) is dict and type(phrase.get("words")) is str:
            words = phrase["words"]
            masked_words = replaced.get(words) or self.text(words)
        for key, value in found.items():
            if key == "phrase" and type(value) is dict:
                for name, item in value.items():
                    if name == "words" and masked_words is not None:
                        value[name] = masked_words
                    elif name != "role":
                        value[name] = self._walk(item, ("phrase", name))
            elif key == "key_words" and type(value) is list:
                for word in value:
                    if type(word) is dict:
                        self._keyword(word, words, masked_words)
            else:
                found[key] = self._walk(value, ("hits", key))

    def _keyword(self, word: dict[str, Any], words: str | None, masked_words: str | None) -> None:
        val = word.get("val")
        start, end = word.get("from"), word.get("to")
        for key, item in word.items():
            if key not in ("from", "to", "val"):
                word[key] = self._walk(item, ("key_words", key))
        if type(val) is not str:
            return
        masked = self.text(val)
        if (
            words is not None
            and masked_words is not None
            and type(start) is int
            and type(end) is int
            and 0 <= start < end <= len(words)
            and words[start:end] == val
        ):
            stretch = masked_words[start:end]
            masked = "".join("*" if s == "*" or m == "*" else m for s, m in zip(stretch, masked, strict=True))
        word["val"] = masked


def canonical(text: str) -> str:
    """What a personal field is hashed by: a phone number's digits (without ``+86``), or the
    value with its outer spaces removed."""
    from qcflow.pii.detect import DIGITS

    digits = "".join(DIGITS.get(char, "") for char in text)
    rest = "".join(char for char in text if char not in DIGITS and char not in " -+()\u3000－")
    if digits and not rest:
        if len(digits) == 13 and digits.startswith("86"):
            return digits[2:]
        return digits
    return text.strip()
