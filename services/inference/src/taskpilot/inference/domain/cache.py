"""The semantic cache's rules: what a cached answer is scoped by, when a stored answer may
serve a new question, and which answers may be stored at all. Pure; the store is an adapter.

A hit needs more than a close embedding: e5's cosines are compressed (paraphrases 0.88-0.95,
and "how much is the premium plan" is 0.97 from "how much is the basic plan"). So the question
and the stored one must also agree on intent, numbers, currency, plan or product variant,
action verb and negation. Only the normalised last message is embedded: never the system
prompt or the history (which made LiteLLM's own semantic cache hit across different questions).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from taskpilot.inference.domain.rules import normalise

_NUMBER_WORDS = {
    w: str(n)
    for n, words in enumerate(
        [
            "zero cero zero null zéro zero",
            "one uno una um uma eins un une",
            "two dos dois zwei deux due",
            "three tres três drei trois tre",
            "four cuatro quatro vier quatre quattro",
            "five cinco fünf cinq cinque",
            "six seis sechs six sei",
            "seven siete sete sieben sept sette",
            "eight ocho oito acht huit otto",
            "nine nueve nove neun neuf",
            "ten diez dez zehn dix dieci",
            "eleven once onze elf onze undici",
            "twelve doce doze zwölf douze dodici",
            "",
            "",
            "fifteen quince quinze fünfzehn",
            "",
            "",
            "",
            "",
            "twenty veinte vinte zwanzig vingt venti",
        ]
    )
    for w in words.split()
    if n > 1  # "one"/"un"/"a" are articles more often than counts
}
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_CURRENCIES = {
    "€": "eur",
    "eur": "eur",
    "euro": "eur",
    "euros": "eur",
    "euro's": "eur",
    "$": "usd",
    "usd": "usd",
    "dollar": "usd",
    "dollars": "usd",
    "dólares": "usd",
    "£": "gbp",
    "gbp": "gbp",
    "pound": "gbp",
    "pounds": "gbp",
    "libras": "gbp",
    "brl": "brl",
    "reais": "brl",
    "r$": "brl",
    "chf": "chf",
    "franken": "chf",
}
_NEGATIONS = frozenset(
    "not no don't doesn't isn't aren't can't cannot won't wouldn't never without none nothing "
    "nunca sin tampoco ni não nao sem nem nicht kein keine keinen keiner nie ohne "
    "ne pas jamais sans aucun aucune non mai senza nessun nessuna n't".split()
)
_PLANS = {
    "basic": "basic básico basico basique base basis einfach",
    "standard": "standard estándar estandar padrão padrao",
    "premium": "premium prémium",
    "pro": "pro professional profesional profissional",
    "plus": "plus",
    "gold": "gold oro ouro",
    "silver": "silver plata prata silber argent argento",
    "family": "family familia família familiar familie famille famiglia",
    "student": "student students estudiante estudiantes estudante estudantes étudiant studente",
    "kids": "kid kids child children niño niños niña criança crianças kinder enfant enfants "
    "bambini bambino",
    "men": "men men's man's man hombre hombres caballero homem homens herren herrenschnitt "
    "homme hommes uomo",
    "women": "women women's woman's woman mujer mujeres señora mulher mulheres damen "
    "damenschnitt femme femmes donna",
    "monthly": "monthly month mensual mensal monatlich monat mensuel mensile mes mês mois mese",
    "annual": "annual yearly year anual anuais jährlich jahr annuel annuale año ano an anno",
    "weekly": "weekly week semanal wöchentlich hebdomadaire settimanale semana woche semaine "
    "settimana",
    "daily": "daily day diario diaria diária täglich journalier giornaliero día dia tag jour "
    "giorno",
    "city": "city ciudad cidade stadt ville città urbana",
    "full": "full complete completa completo komplett complète",
    "unlimited": "unlimited ilimitado ilimitada unbegrenzt illimité illimitato",
    "ebike": "e-bike ebike electric eléctrica elétrica elektrisch électrique elettrica",
}
_PLAN_OF = {w: plan for plan, words in _PLANS.items() for w in words.split()}
_PLAN_PREFIXES = (  # German compounds: Monatsabo, Jahresabo, Studentenabo, Tageskarte
    ("monats", "monthly"),
    ("jahres", "annual"),
    ("wochen", "weekly"),
    ("tages", "daily"),
    ("studenten", "student"),
    ("familien", "family"),
    ("kinder", "kids"),
    ("einzel", "single"),
)
_ASKS = {
    "where": r"where|dónde|donde|onde|wo|wohin|où|dove",
    "when": r"when|cuándo|cuando|quando|wann|quand|what time|a qué hora|que horas|"
    r"um wie viel uhr|à quelle heure|a che ora|hours|horario|horário",
    "price": r"how much|price|cost|charge|cuánto cuesta|cuánto vale|cuánto es|precio|quanto "
    r"custa|quanto é|preço|was kostet|wie teuer|kostet|preis|combien coûte|prix|coûte|"
    r"quanto costa|prezzo|cobráis|cobram",
    "duration": r"how long|cuánto dura|cuánto tarda|dura|quanto tempo|demora|wie lange|dauert|"
    r"combien de temps|dure|quanto dura",
    "who": r"who|quién|quem|wer|qui|chi",
}
_ASK_OF = [(name, re.compile(rf"\b(?:{words})\b")) for name, words in _ASKS.items()]
_GENERIC = frozenset(
    "what when where which does have your with about there this that from much many cost "
    "costs price prices charge much please could would need want like know tell also "
    "cuánto cuanto cuesta cuestan precio precios tenéis tienen puedo quiero hacer vuestro "
    "vuestra quanto custa custam preço preços vocês posso quero fazer kostet kosten preis "
    "preise habt könnt kann möchte combien coûte prix vous avez pouvez quel quelle quanto "
    "costa prezzo avete potete".split()
)
_INFO_INTENTS = frozenset({"faq", "pricing"})
_ACTIONS = {
    "book": r"book|reserv|schedul|appointment|cita|marcar|marca|buch|termin|rendez|prenot",
    "cancel": r"cancel|anul|storn|absag|annul|disdic",
    "change": r"chang|resched|move|mov|cambi|mud|remarc|verschieb|änder|décal|modif|spost",
    "buy": r"buy|purchas|compr|kauf|achet|acquist",
    "rent": r"rent|hire|alquil|alug|miet|loue|nolegg",
    "return": r"return|refund|devol|reembol|rückgab|erstatt|rembours|rimbors|restitu",
    "repair": r"repair|fix|arregl|repar|consert|reparier|ripar",
    "pay": r"pay|pag|zahl|bezahl|pai",
}
_ACTION_OF = [(name, re.compile(rf"^(?:{roots})")) for name, roots in _ACTIONS.items()]
_LANG_WORDS = {
    "en": "the is are do does you what how much can i my your to for of it have when where "
    "there any hi hello thanks please",
    "es": "el la los las es que qué cuánto cuanto para por tenéis tienen hay un una y mi me "
    "con dónde cuándo puedo abrís hola gracias está estáis vale precio",
    "pt": "o os as é que quanto custa custam qual para por têm tem um uma e meu com onde "
    "quando posso vocês "
    "olá obrigado obrigada não está estão fazem preço",
    "de": "der die das ist ich und was wie kann habt ihr ein eine mit für wann wo nicht "
    "kostet gibt es hallo danke bitte",
    "fr": "le la les est que quel quelle combien pour vous un une et mon avec où quand je "
    "pas c'est bonjour merci",
    "it": "il lo gli è che quanto per avete un una e mio con dove quando posso non costa "
    "ciao grazie siete",
}
_LANG_OF: dict[str, list[str]] = {}
for _lang, _words in _LANG_WORDS.items():
    for _w in _words.split():
        _LANG_OF.setdefault(_w, []).append(_lang)
_PERSONAL = re.compile(
    r"[\w.+-]+@[\w-]+\.[\w.]+"  # e-mail
    r"|\+?\d[\d \-]{7,}\d"  # phone numbers, ids
    r"|\b(my name is|i'm called|me llamo|mi nombre es|meu nome é|chamo-me|ich heiße|"
    r"je m'appelle|mi chiamo|my (order|booking|reservation) (number|id))\b",
    re.IGNORECASE,
)
NO_CACHE_INTENTS = frozenset({"booking", "payment", "complaint", "human", "spam", "other"})
"""Answers that depend on the lead (their booking, payment, problem) are never shared."""


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalise(text))


def detect_language(text: str, default: str) -> str:
    """The language a message is most likely in, by function words; ``default`` when unsure."""
    scores: dict[str, int] = {}
    for token in tokens(text):
        for lang in _LANG_OF.get(token, ()):
            scores[lang] = scores.get(lang, 0) + 1
    if not scores:
        return default
    best = max(scores.values())
    leaders = [lang for lang, s in scores.items() if s == best]
    return default if default in leaders else sorted(leaders)[0]


@dataclass(frozen=True)
class CacheScope:
    """Answers are only ever shared inside one scope: a knowledge update (new version), a new
    prompt or another language starts an empty one."""

    tenant_id: str
    knowledge_version: int
    prompt_version: str
    language: str

    def key(self) -> str:
        return f"{self.tenant_id}.{self.knowledge_version}.{self.prompt_version}.{self.language}"


@dataclass(frozen=True)
class Signature:
    """The parts of a question that must agree for one answer to serve both."""

    intent: str | None
    numbers: frozenset[str]
    currencies: frozenset[str]
    plans: frozenset[str]
    actions: frozenset[str]
    negated: bool
    asks: frozenset[str] = frozenset()
    """What is asked: where, when, price, duration, who."""
    stems: frozenset[str] = frozenset()
    """Content words (5-letter stems), compared only where the tenant's knowledge uses them."""
    vocabulary: frozenset[str] = frozenset()
    """Query side only: stems of the knowledge retrieved for it (its products, plans, terms)."""

    def key_fields(self) -> tuple[object, ...]:
        return (
            self.intent,
            self.numbers,
            self.currencies,
            self.plans,
            self.actions,
            self.negated,
            self.asks,
        )


def stems(text: str) -> frozenset[str]:
    return frozenset(
        w[:5] for w in _TOKEN.findall(normalise(text)) if len(w) >= 4 and w not in _GENERIC
    )


def cache_intent(intent: str | None) -> str | None:
    """FAQ and pricing are one intent for the cache: both ask for the business's facts, and
    the classifier splits paraphrases of one question between them."""
    return "info" if intent in _INFO_INTENTS else intent


def signature(text: str, intent: str | None, knowledge: str = "") -> Signature:
    """``knowledge``: the text retrieved for the question; a word the two questions do not
    share that the business's own knowledge uses (a service, a plan, a product) makes them
    different questions."""
    folded = unicodedata.normalize("NFC", text).casefold()
    words = _TOKEN.findall(folded)
    numbers = {n.replace(",", ".") for n in _NUMBER.findall(folded)}
    numbers |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
    currencies = {code for sym, code in _CURRENCIES.items() if not sym.isalpha() and sym in folded}
    currencies |= {_CURRENCIES[w] for w in words if w in _CURRENCIES}
    plans = {_PLAN_OF[w] for w in words if w in _PLAN_OF}
    plans |= {plan for w in words for prefix, plan in _PLAN_PREFIXES if w.startswith(prefix)}
    actions = {name for name, root in _ACTION_OF for w in words if root.match(w)}
    negated = any(w in _NEGATIONS or w.endswith("n't") for w in words)
    asks = {name for name, pattern in _ASK_OF if pattern.search(folded)}
    return Signature(
        cache_intent(intent),
        frozenset(numbers),
        frozenset(currencies),
        frozenset(plans),
        frozenset(actions),
        negated,
        frozenset(asks),
        stems(text),
        stems(knowledge),
    )


def asks_the_same(message: str, question: str) -> bool:
    """Whether a lead's message asks what a stored question (an FAQ's) asks: same numbers,
    currency, plan, action, negation and kind of question. Intent is not compared (the FAQ
    has none) and neither are content words."""
    a, b = signature(message, None), signature(question, None)
    return a.key_fields() == b.key_fields()


def same_question(query: Signature, stored: Signature) -> bool:
    if query.key_fields() != stored.key_fields():
        return False
    return not ((query.stems ^ stored.stems) & query.vocabulary)


def personal_data(text: str) -> bool:
    """Whether a text carries something that identifies or belongs to one lead."""
    return bool(_PERSONAL.search(text))


def refusal_to_store(
    *,
    round: int,
    tool_calls: int,
    intent: str | None,
    question: str,
    reply: str | None,
    uses_personal_data: bool,
) -> str | None:
    """Why this answer must not be cached, or None when it may be."""
    if round > 0 or tool_calls:
        return "tool-call turn"
    if reply is None:
        return "no reply text"
    if intent is None or intent in NO_CACHE_INTENTS:
        return f"intent {intent} depends on the lead"
    if uses_personal_data or personal_data(question) or personal_data(reply):
        return "uses the lead's personal data"
    return None


@dataclass(frozen=True)
class CachedAnswer:
    """A model's answer to one question, stored for the others who ask the same."""

    id: str
    scope: CacheScope
    question: str
    vector: tuple[float, ...]
    signature: Signature
    text: str
    tier: str
    model: str
    citations: tuple[dict[str, object], ...]
    created_at: float
    expires_at: float


def entry_id(scope: CacheScope, question: str) -> str:
    return hashlib.sha256(f"{scope.key()}\n{question}".encode()).hexdigest()[:32]


def best_match(
    entries: Sequence[CachedAnswer],
    similarities: Sequence[float],
    query: Signature,
    min_similarity: float,
    now: float,
) -> tuple[CachedAnswer, float] | None:
    """The closest live entry that asks the same question, if it is close enough."""
    ranked = sorted(zip(similarities, range(len(entries)), strict=True), reverse=True)
    for similarity, i in ranked:
        if similarity < min_similarity:
            return None
        entry = entries[i]
        if entry.expires_at > now and same_question(query, entry.signature):
            return entry, float(similarity)
    return None
