"""The full ``aveyb quickstart`` (pretrain the tiny preset on the bundled corpus, fine-tune on
generated needle-in-a-haystack and the bundled task samples, print and save the table), run
with small step counts so it fits CI."""

import json

import pytest


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, capsys):
    from aveyb.cli import main

    out = tmp_path / "qs"
    small = ["--set", "max_eval_examples=16", "--set", "niah_train_size=32", "--set", "niah_test_size=16",
             "--set", "max_train_examples=64"]
    assert main(["quickstart", "--output-dir", str(out), "--pretrain-steps", "4", "--finetune-steps", "3", *small]) == 0
    printed = capsys.readouterr().out
    assert "avey-b-tiny" in printed and "niah1" in printed
    assert (out / "pretrain" / "final" / "config.json").is_file()
    table = (out / "report.md").read_text()
    for task in ("niah1", "sentiment_rt-sample", "paraphrase_bible-sample", "ner_wnut-sample",
                 "news_retrieval-sample"):
        assert task in table
    assert (out / "results.csv").is_file() and (out / "scores.png").is_file()
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 5 and all(r["score"]["n"] == 1 for r in rows)
    # resumable: a second call reuses the pretrained model and the finished runs
    assert main(["quickstart", "--output-dir", str(out), "--pretrain-steps", "4", "--finetune-steps", "3", *small]) == 0
    assert "reusing the pretrained model" in capsys.readouterr().out
