"""GPT-2-style byte-level BPE: training on a corpus and encoding, matching runtime/tokenizer.

Text is split into pieces by GPT-2's pre-tokenization rule

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

(Python's re has no \\p{L}, and the `regex` module is not installed, so pieces() implements the
rule by hand with Go's character classes, exactly as runtime/tokenizer/pretokenize.go does; ASCII
text takes an equivalent `re` fast path). Each piece's UTF-8 bytes are spelled with GPT-2's
byte<->unicode table and merges join adjacent symbols, lowest rank first.

Training is Sennrich et al.'s algorithm with incremental pair counts: the most frequent adjacent
pair (ties broken by the smallest pair, so the result is deterministic) is merged until the
vocabulary has the requested number of distinct tokens.
"""

import collections
import heapq
import json
import re
import unicodedata


def bytes_to_unicode():
    """GPT-2's table: printable Latin-1 bytes map to themselves, the others to U+0100 onwards.
    Returns (byte order list, dict byte -> char)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ORDER, BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}

LETTER, NUMBER, SPACE, OTHER = 1, 2, 3, 4

# Go's unicode.IsSpace: ASCII \t \n \v \f \r and space, U+0085, U+00A0, and the White_Space
# property above Latin-1.
_GO_SPACE = set("\t\n\v\f\r \u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def classify(ch):
    """The class of one character as runtime/tokenizer classifies it (unicode.IsLetter,
    IsNumber, IsSpace, in that order)."""
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        return LETTER
    if cat[0] == "N":
        return NUMBER
    if ch in _GO_SPACE:
        return SPACE
    return OTHER


def _pieces_slow(s):
    """GPT-2 pre-tokenization of s, character by character (a port of nextPiece)."""
    out = []
    n = len(s)
    cls = [classify(c) for c in s]
    i = 0
    while i < n:
        j = None
        if s[i] == "'" and i + 1 < n:
            c = s[i + 1]
            if c in "stmd":
                j = i + 2
            elif c in "rv" and i + 2 < n and s[i + 2] == "e":
                j = i + 3
            elif c == "l" and i + 2 < n and s[i + 2] == "l":
                j = i + 3
        if j is None:
            k = cls[i]
            start = i
            if s[i] == " " and i + 1 < n and cls[i + 1] != SPACE:
                k = cls[i + 1]
                start = i + 1
            if k != SPACE:
                j = start + 1
                while j < n and cls[j] == k:
                    j += 1
            else:
                j = i
                while j < n and cls[j] == SPACE:
                    j += 1
                if j < n and j - i > 1:
                    j -= 1
        out.append(s[i:j])
        i = j
    return out


_ASCII_PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)


def pieces(s):
    """GPT-2 pre-tokenization of s (list of substrings that concatenate to s)."""
    if s.isascii():
        return _ASCII_PAT.findall(s)
    return _pieces_slow(s)


def spell(piece):
    """The byte-level spelling of a piece: one table character per UTF-8 byte."""
    return "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


def train(word_counts, vocab_size, special="<|endoftext|>", log=None):
    """Learn merges from word_counts (byte-level spelling -> count) until the vocabulary holds
    vocab_size tokens including the 256 bytes and the special token (which gets the last id).
    Returns (vocab dict token -> id, merges list of (a, b))."""
    words = [list(w) for w in sorted(word_counts)]
    freqs = [word_counts[w] for w in sorted(word_counts)]
    counts = collections.Counter()
    where = collections.defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            counts[p] += f
            where[p].add(wi)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    vocab = {BYTE_ENCODER[b]: i for i, b in enumerate(BYTE_ORDER)}
    merges = []
    target = vocab_size - 1  # the special token takes the last id
    while len(vocab) < target and heap:
        negc, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -negc or -negc <= 0:
            continue  # stale heap entry
        a, b = pair
        ab = a + b
        merges.append(pair)
        if ab not in vocab:
            vocab[ab] = len(vocab)
        changed = set()
        for wi in sorted(where.pop(pair, ())):
            w, f = words[wi], freqs[wi]
            if len(w) < 2:
                continue
            for p in zip(w, w[1:]):
                counts[p] -= f
                changed.add(p)
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(ab)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            words[wi] = nw
            for p in zip(nw, nw[1:]):
                counts[p] += f
                where[p].add(wi)
                changed.add(p)
        counts.pop(pair, None)
        for p in changed:
            c = counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                counts.pop(p, None)
        if log and len(merges) % 500 == 0:
            log("bpe: %d merges, vocab %d, last %r (count %d)" % (len(merges), len(vocab), ab, -negc))
    vocab[special] = len(vocab)
    return vocab, merges


class Encoder:
    """Encodes text with a vocabulary and merges the way GPT-2's encoder.py does."""

    def __init__(self, vocab, merges, special="<|endoftext|>"):
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.special = special
        self.inv = {i: t for t, i in vocab.items()}
        self.cache = {}

    def _bpe(self, word):
        w = list(word)
        while len(w) > 1:
            best = min(zip(w, w[1:]), key=lambda p: self.ranks.get(p, 1 << 30))
            if best not in self.ranks:
                break
            a, b = best
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            w = nw
        return [self.vocab[t] for t in w]

    def encode_ordinary(self, text):
        """Ids of text, treating any special-token spelling in it as ordinary text."""
        ids = []
        for p in pieces(text):
            sp = spell(p)
            got = self.cache.get(sp)
            if got is None:
                got = self._bpe(sp)
                if len(self.cache) < 1_000_000:
                    self.cache[sp] = got
            ids.extend(got)
        return ids

    def encode(self, text):
        """Ids of text; occurrences of the special token become its id (as tokenizer.Encode)."""
        ids = []
        parts = text.split(self.special)
        for k, part in enumerate(parts):
            if k:
                ids.append(self.vocab[self.special])
            ids.extend(self.encode_ordinary(part))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.inv[i]
            if t == self.special:
                out += t.encode("utf-8")
            else:
                out += bytes(BYTE_DECODER[c] for c in t)
        return out.decode("utf-8", errors="replace")


def save(directory, vocab, merges):
    """Write vocab.json and merges.txt (with GPT-2's "#version" first line)."""
    import os

    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
