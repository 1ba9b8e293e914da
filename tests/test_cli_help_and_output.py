"""Command-line help and run output: every option described (no raw reStructuredText), an
``aveyb tasks`` page, no transformers LOAD REPORT when a model loads for fine-tuning, and
progress bars that stay on screen with the final loss."""

import argparse

import pytest

# the study stage and convert belong to other parts of the project and are checked there
NOT_HERE = {"study", "convert"}


def walk(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not (path == () and name in NOT_HERE):
                    yield from walk(sub, path + (name,))
        elif not isinstance(action, argparse._HelpAction):
            yield path, parser, action


def test_every_option_has_a_description_without_rst():
    from aveyb.cli import build_parser

    seen = set()
    for path, parser, action in walk(build_parser()):
        seen.add(path)
        name = "/".join(path) + " " + (action.option_strings[0] if action.option_strings else action.dest)
        assert action.help, f"{name} has no help"
        assert "``" not in action.help and "``" not in (parser.description or ""), f"{name}: raw RST"
    assert {("finetune",), ("tasks",), ("pretrain",), ("sweep",), ("report",), ("quickstart",)} <= seen


def test_finetune_help_describes_output_dir_lr_and_seed(capsys):
    from aveyb.cli import main

    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("run folder: results.json", "peak learning rate", "random seed", "--text-column NAME the text",
                  "--task-type"):
        assert words in out, words


def test_tasks_has_a_help_page(capsys):
    from aveyb.cli import main

    with pytest.raises(SystemExit):
        main(["tasks", "--help"])
    out = capsys.readouterr().out
    assert "--data-dir" in out and "meta.json" in out


def test_loading_for_finetuning_prints_no_load_report(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    from aveyb.tasks.testing import make_tiny_bert
    from aveyb.tasks.training import load_model

    path = make_tiny_bert(tmp_path / "bert")
    capfd.readouterr()
    before = hf_logging.get_verbosity()
    load_model("sequence_classification", str(path), num_labels=2)  # a new head: transformers would report it
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "\x1b[" not in err
    assert hf_logging.get_verbosity() == before


def test_progress_bars_stay_with_the_final_loss(tmp_path, capsys):
    import torch

    from aveyb.tasks.config import FinetuneConfig
    from aveyb.tasks.training import progress, train_loop

    assert progress(total=1, enabled=True).leave is True
    model = torch.nn.Linear(2, 1)
    feats = [{"x": [float(i), 1.0], "y": float(i)} for i in range(4)]

    def collate(batch):
        return {"x": torch.tensor([f["x"] for f in batch]), "y": torch.tensor([f["y"] for f in batch])}

    cfg = FinetuneConfig(max_steps=3, batch_size=2, checkpoint_every=0)
    stats = train_loop(model, feats, collate, cfg, torch.device("cpu"),
                       loss_fn=lambda m, b: ((m(b["x"]).squeeze(-1) - b["y"]) ** 2).mean(), desc="toy")
    err = capsys.readouterr().err
    assert "toy: 100%" in err and f"loss={stats['train_loss']:.4f}" in err.split("toy: 100%")[-1]
