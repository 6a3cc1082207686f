"""Words → paintings: a style typed in words matched to the style library, with the reasons.

Each painting is described by fields (artist and the names people use for them, title, movement, medium, palette,
mood, tags). A typed word matches a term of a field when RapidFuzz finds them alike (`fuzz.ratio` ≥ 85, so
"impressionist" finds "impressionism" and "colour" finds "color"), or when they share a long enough beginning
("swirling" and "swirls"); a term of several words matches as a phrase (`fuzz.partial_ratio` ≥ 90 within the typed
text). A field's score is its weight times its matches, capped, so a painting with many tags cannot outvote an artist
named outright. Words that name a text preset ("ukiyo-e", "Pointillism") bring that preset's vocabulary
(`vocabulary.toml`: the preset's words in the library's terms) at a lower weight. Ties go to the catalogue's order.
"""
from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from importlib import resources

from rapidfuzz import fuzz
from rapidfuzz.distance import Prefix

from nstdiff.library.catalogue import Painting, list_paintings
from nstdiff.settings import Settings

WORD_SCORE = 85  # fuzz.ratio between a typed word and a one-word term
PHRASE_SCORE = 90  # fuzz.partial_ratio of a several-word term within the typed text
PRESET_WEIGHT = 0.6  # words a named preset brings count this much of typed ones
# field → (weight of one match, most matches counted)
FIELDS = {"artist": (4.0, 1), "title": (2.0, 2), "movement": (2.0, 1), "tags": (1.5, 3), "palette": (1.0, 2),
          "mood": (1.0, 2), "medium": (1.0, 1)}
STOPWORDS = frozenset("""a an and as at by de for from in into it its like look looking make me my of on or please
    style styled styles the to with painting paintings painted picture art artwork image photo my""".split())
SPELLINGS = {"gray": "grey", "colors": "colours", "color": "colour", "colorful": "colourful", "harbor": "harbour"}


def normalise(text: str) -> str:
    """Lowercase ASCII words separated by single spaces ('Cézanne's  Ukiyo-e!' → 'cezanne s ukiyo e')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", " ", ascii_text).split()
    return " ".join(SPELLINGS.get(word, word) for word in words)


def words_of(text: str) -> list[str]:
    return [w for w in normalise(text).split() if w not in STOPWORDS and len(w) > 1]


@dataclass(frozen=True)
class Match:
    painting: Painting
    score: float
    why: str  # "artist 'van gogh', title 'starry', tags 'swirls'"

    def describe(self) -> str:
        return f"{self.painting.label} (matched {self.why})" if self.why else self.painting.label


def _terms(painting: Painting) -> dict[str, list[str]]:
    artist = [painting.artist, *painting.aliases] if painting.artist else []
    title = [painting.title, *words_of(painting.title)]
    # "Pointillism / Neo-Impressionism": each part whole, so "impressionism" does not find Post-Impressionism
    movement = [part.strip() for part in re.split(r"[/(),]", painting.movement) if part.strip()]
    return {"artist": artist, "title": title, "movement": movement, "tags": painting.tags,
            "palette": painting.palette, "mood": painting.mood, "medium": words_of(painting.medium)}


def _word_alike(term: str, word: str, prefix: bool = True) -> float:
    """How alike two single words are, 0–1 (0 below the thresholds)."""
    score = fuzz.ratio(term, word)
    if score >= WORD_SCORE:
        return score / 100
    if not prefix:
        return 0.0
    shared = Prefix.similarity(term, word)  # a shared beginning: "swirl" in "swirls" and "swirling"
    if shared >= 4 and shared >= 0.8 * min(len(term), len(word)):
        return 0.9
    return 0.0


def _term_score(term: str, text: str, words: list[str], prefix: bool = True) -> float:
    term = normalise(term)
    if not term:
        return 0.0
    if " " in term:  # a phrase: within the typed text, not longer than it
        if len(term) > len(text) + 1:
            return 0.0
        score = fuzz.partial_ratio(term, text)
        return score / 100 if score >= PHRASE_SCORE else 0.0
    if len(term) <= 2:
        return 0.0
    return max((_word_alike(term, word, prefix) for word in words if len(word) > 2), default=0.0)


def _score(painting: Painting, text: str, words: list[str]) -> tuple[float, list[tuple[str, str]]]:
    total, matched = 0.0, []
    for field, terms in _terms(painting).items():
        weight, most = FIELDS[field]
        hits = sorted(((_term_score(term, text, words), term) for term in dict.fromkeys(terms)),
                      key=lambda hit: -hit[0])  # the best first; equals in the catalogue's order
        counted = [(score, term) for score, term in hits if score > 0][:most]
        total += weight * sum(score for score, _ in counted)
        matched += [(field, term) for _, term in counted]
    return total, matched


@functools.lru_cache(maxsize=1)
def preset_vocabulary() -> dict[str, str]:
    """Preset name → its words in the library's terms (`vocabulary.toml`)."""
    text = (resources.files("nstdiff.library") / "vocabulary.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text)["presets"])


def named_presets(text: str, settings: Settings | None = None) -> list[tuple[str, str]]:
    """(preset name, its library words) for each preset the typed text names by its name or title."""
    from nstdiff.diffusion.presets import load_presets

    vocabulary = preset_vocabulary()
    typed, words = normalise(text), words_of(text)
    found = []
    for preset in load_presets(settings).values():
        extra = vocabulary.get(preset.name)
        if extra is None:  # a person's own preset: its tags stand in
            extra = " ".join(preset.tags)
        names = {normalise(preset.name), normalise(preset.title)}
        if any(_term_score(name, typed, words, prefix=False) >= 0.9 for name in names if name):
            found.append((preset.name, extra))
    return found


def _why(matched: list[tuple[str, str]], via: list[str]) -> str:
    parts: dict[str, list[str]] = {}
    for field, term in matched:
        parts.setdefault(field, []).append(f"'{term.lower()}'")
    text = ", ".join(f"{field} {' '.join(terms) if len(terms) == 1 else ', '.join(terms)}"
                     for field, terms in parts.items())
    if via:
        text += f" (via the preset{'s' if len(via) > 1 else ''} {', '.join(via)})"
    return text


def _rank(text: str, settings: Settings | None, exclude: set[str] = frozenset(), presets: bool = True) -> list[Match]:
    typed, words = normalise(text), words_of(text)
    presets = named_presets(text, settings) if presets else []
    extra = " ".join(words for _, words in presets)
    extra_typed, extra_words = normalise(extra), words_of(extra)
    ranked = []
    for order, painting in enumerate(list_paintings(settings)):
        if painting.id in exclude:
            continue
        score, matched = _score(painting, typed, words)
        via: list[str] = []
        if presets:
            more, more_matched = _score(painting, extra_typed, extra_words)
            new = [m for m in more_matched if m not in matched]
            if new:
                score += PRESET_WEIGHT * more
                matched += new
                via = [name for name, _ in presets]
        if score > 0:
            ranked.append((-round(score, 6), order, Match(painting, round(score, 3), _why(matched, via))))
    ranked.sort(key=lambda item: item[:2])
    return [item[2] for item in ranked]


def describing_words(painting: Painting) -> str:
    """A painting's look in words (movement, tags, palette, mood): to find the paintings most like it."""
    return " ".join([painting.movement, *painting.tags, *painting.palette, *painting.mood])


def match(text: str, k: int = 3, settings: Settings | None = None, fill: bool = True) -> list[Match]:
    """The `k` paintings that fit `text` best, best first, each with why; empty when no word of it fits any. With
    `fill`, fewer than `k` matches are topped up with the paintings most like the best one."""
    found = _rank(text, settings)[:k]
    if fill and found and len(found) < k:
        best = found[0].painting
        like = _rank(describing_words(best), settings, exclude={m.painting.id for m in found}, presets=False)
        found += [Match(m.painting, 0.0, f"nothing else matched: the closest in look to '{best.title}'")
                  for m in like[:k - len(found)]]
    return found


def no_match_message(text: str, settings: Settings | None = None) -> str:
    count = len(list_paintings(settings))
    return (f"no painting in the style library matches '{text}'. Try an artist (Van Gogh, Hokusai, Turner, Cézanne), a "
            "movement (impressionism, ukiyo-e, pointillism), a subject or a mood (night, sea, portrait, stormy, "
            f"gold), or a preset's name; `nstdiff library list` shows all {count}")
