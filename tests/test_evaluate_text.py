"""Text-match scores by hand and against rouge-score and sacrebleu."""

from __future__ import annotations

import pytest

from pfkit.evaluate._numbers import numeric_match, parse_number
from pfkit.evaluate._text import (
    bleu,
    bleu_from_statistics,
    bleu_statistics,
    contains,
    entity_match,
    exact_match,
    f1_score,
    keyword_coverage,
    normalize_answer,
    regex_match,
    rouge,
)

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Paris is the capital of France", "The capital of France is Paris."),
    ("It rained heavily in 2024, about 1,200 mm.", "In 2024 it rained about 1,200 mm in all."),
    ("completely unrelated words", "nothing in common here"),
    ("one", "one"),
    ("the the the the", "the cat"),
    ("Hello, world! It's a test-case: x-1 vs. y.", "hello world its a test case x 1 vs y"),
    ("", "reference text"),
    ("answer text", ""),
]


def test_squad_normalisation_and_f1_by_hand():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert exact_match("The cat.", "cat") == 1.0
    assert exact_match("The cat.", "cat", normalize=False) == 0.0
    # predicted {cat, sat, on, mat}, expected {cat, was, sitting, on, mat}: 3 common
    assert f1_score("The cat sat on the mat.", "A cat was sitting on the mat.") == pytest.approx(
        2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    assert f1_score("", "") == 1.0 and f1_score("", "x") == 0.0 and f1_score("a b", "c") == 0.0
    assert f1_score(None, "x") == 0.0


@pytest.mark.parametrize("answer,reference", PAIRS)
def test_rouge_matches_rouge_score(answer, reference):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    expected = scorer.score(reference, answer)  # (target, prediction)
    ours = rouge(answer, reference)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert ours[f"{key}_precision"] == pytest.approx(expected[key].precision)
        assert ours[f"{key}_recall"] == pytest.approx(expected[key].recall)
        assert ours[f"{key}_f1"] == pytest.approx(expected[key].fmeasure)


def test_rouge_handles_unicode_words():
    scores = rouge("東京 は 首都", "首都 は 東京")
    assert scores["rouge1_f1"] == 1.0 and scores["rougeL_f1"] == pytest.approx(1 / 3)
    assert rouge("café crème", "café")["rouge1_recall"] == 1.0


@pytest.mark.parametrize("answer,reference", PAIRS)
def test_sentence_bleu_matches_sacrebleu(answer, reference):
    sacrebleu = pytest.importorskip("sacrebleu")
    expected = sacrebleu.sentence_bleu(answer, [reference]).score / 100
    assert bleu(answer, reference) == pytest.approx(expected, abs=1e-9)


def test_corpus_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    answers = [a for a, _ in PAIRS]
    references = [r for _, r in PAIRS]
    totals = [sum(column) for column in zip(*(bleu_statistics(a, [r]) for a, r in PAIRS),
                                             strict=True)]
    expected = sacrebleu.corpus_bleu(answers, [references]).score / 100
    assert bleu_from_statistics(totals) == pytest.approx(expected, abs=1e-9)


def test_keywords_regex_entities():
    assert contains("The answer is Paris.", "paris") == 1.0
    assert contains("The answer is Paris.", "paris", case_sensitive=True) == 0.0
    assert keyword_coverage("red green", "red, blue, green") == pytest.approx(2 / 3)
    assert keyword_coverage("x", "") is None
    assert regex_match("Order #123", r"#\d+") == 1.0
    assert regex_match("Order #123", r"#\d+", full=True) == 0.0
    assert entity_match(["Seattle", "Paris."], "paris, seattle") == {
        "exact_match": 1.0, "partial_match": 1.0}
    assert entity_match(["Paris"], "paris, seattle") == {"exact_match": 0.0, "partial_match": 1.0}
    assert entity_match("Rome", "paris") == {"exact_match": 0.0, "partial_match": 0.0}


@pytest.mark.parametrize("text,value", [
    ("42", 42.0), ("The answer is 3/4.", 0.75), ("50%", 0.5), ("1,234.5 km", 1234.5),
    ("-0.25", -0.25), ("$12", 12.0), ("about 1e3 items", 1000.0), (7, 7.0), ("none", None),
    ("1/0", None), (True, None), (None, None), (".5", 0.5),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_numeric_match_tolerance_and_missing():
    assert numeric_match("x = 0.333333", "1/3", abs_tol=1e-5) == 1.0
    assert numeric_match("10", "10.2") == 0.0
    assert numeric_match("10", "10.2", rel_tol=0.05) == 1.0
    assert numeric_match("no number", "3") is None
    assert numeric_match("steps: 2, then 5", "5", last=True) == 1.0
