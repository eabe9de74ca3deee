"""Level 0: rules that need no model and no embedding. Pure functions over the text.

They catch what must never reach a model: nothing to answer (empty, emoji only), a lead who
asks us to stop writing (answered with silence and a handoff, so a person sees it and the bot
stays quiet), and obvious spam (silence, recorded). Opt-out words count only when they are the
whole message: "when do you stop serving lunch?" is a question, not an opt-out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_EMOJI_ONLY = re.compile(r"^[\W_\s\U0001F000-\U0001FAFF\u2600-\u27BF]+$")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s\W_]+|[\s\W_]+$")

OPT_OUT = frozenset(
    {
        # en
        "stop",
        "stop all",
        "unsubscribe",
        "opt out",
        "optout",
        "cancel subscription",
        "stop messaging me",
        "stop texting me",
        "stop writing to me",
        "remove me",
        "remove me from your list",
        "do not contact me",
        "don't contact me",
        "end",
        "quit",
        # es
        "baja",
        "dar de baja",
        "darme de baja",
        "parar",
        "para",
        "alto",
        "no me escribas más",
        "no me escribas mas",
        "no quiero más mensajes",
        "no quiero mas mensajes",
        "cancelar suscripción",
        "cancelar suscripcion",
        "dejen de escribirme",
        "deja de escribirme",
        # pt
        "sair",
        "pare",
        "parar de receber",
        "descadastrar",
        "cancelar inscrição",
        "cancelar inscricao",
        "não quero mais mensagens",
        "nao quero mais mensagens",
        "parem de me enviar mensagens",
        # de
        "stopp",
        "abmelden",
        "abbestellen",
        "keine nachrichten mehr",
        "austragen",
        # fr
        "arrêt",
        "arret",
        "arrête",
        "arrete",
        "désabonner",
        "desabonner",
        "me désabonner",
        "désinscription",
        "desinscription",
        "ne plus recevoir",
        # it
        "basta",
        "disiscrivi",
        "disiscrivimi",
        "cancellami",
        "non scrivermi più",
        "non scrivermi piu",
    }
)

_SPAM_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(bitcoin|btc|crypto|usdt|forex)\b.{0,60}"
        r"\b(invest|profit|earn|double|return|gana|lucro|gewinn)",
        r"\b(earn|make|gana|ganhe|verdiene)\b.{0,30}[$€£]\s?\d[\d.,]*\s?(k\b)?.{0,30}"
        r"\b(day|daily|week|día|dia|tag|semana)",
        r"\b(you('ve| have)? won|has ganado|você ganhou|sie haben gewonnen|vous avez gagné"
        r"|hai vinto)\b",
        r"\b(claim|reclama|resgate)\b.{0,30}\b(prize|premio|prêmio|reward|gift card)\b",
        r"\b(seo|backlinks?|web traffic|followers|likes)\b.{0,40}"
        r"\b(services?|cheap|guaranteed|package|boost)\b",
        r"\b(loan|préstamo|empréstimo|kredit)\b.{0,40}\b(approved|aprobado|aprovado|genehmigt|instant)\b",
        r"\b(viagra|cialis|casino|porn|xxx|onlyfans)\b",
        r"(https?://)?(bit\.ly|tinyurl\.com|t\.me|wa\.me/\+?\d{6,}|goo\.gl)/\S+",
        r"\b(work from home|trabaja desde casa|trabalhe em casa)\b.{0,60}"
        r"(\$|€|per day|al día|por dia)",
    )
)


@dataclass(frozen=True)
class Rule:
    intent: str
    reason: str


def normalise(text: str) -> str:
    """The form every comparison uses: NFC, lower case, single spaces, no edge punctuation."""
    folded = unicodedata.normalize("NFC", text).casefold()
    return _EDGE_PUNCT.sub("", _SPACES.sub(" ", folded)).strip()


def is_empty(text: str) -> bool:
    return not text.strip() or bool(_EMOJI_ONLY.match(text.strip()))


def is_opt_out(text: str) -> bool:
    return normalise(text) in OPT_OUT


def is_spam(text: str) -> bool:
    return any(p.search(text) for p in _SPAM_PATTERNS)


def level_zero(text: str) -> Rule | None:
    """What the rules say about a message, or None when it needs levels 1 and up."""
    if is_empty(text):
        return Rule("empty", "nothing to answer")
    if is_opt_out(text):
        return Rule("opt_out", "the lead asked us to stop writing")
    if is_spam(text):
        return Rule("spam", "matches a spam pattern")
    return None
