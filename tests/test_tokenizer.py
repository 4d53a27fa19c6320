import pytest

from gpt import CharTokenizer, ConfigError, UnknownCharactersError


def test_tiny_shakespeare_has_the_lectures_65_characters(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert len(shakespeare) == 1_115_394
    assert tok.vocab_size == 65
    assert "".join(tok.chars) == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_encode_then_decode_gives_the_text_back(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]  # the lecture's example
    assert tok.decode(tok.encode(shakespeare[:5000])) == shakespeare[:5000]


def test_unknown_characters_are_named_not_a_key_error(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    with pytest.raises(UnknownCharactersError) as info:
        tok.encode("Café ☕ at noon é")
    assert not isinstance(info.value, KeyError)
    assert info.value.chars == ["é", "☕"]
    message = str(info.value)
    assert "'é' (U+00E9)" in message and "'☕' (U+2615)" in message and "65 characters" in message


def test_vocabulary_must_be_distinct_single_characters():
    for bad in ([], ["ab", "c"], ["a", "a"]):
        with pytest.raises(ConfigError):
            CharTokenizer(bad)
