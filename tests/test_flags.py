"""toolkit/flags.py: flags generated from a config dataclass, and the config built back from them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from toolkit.cli import build_parser
from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments, field_comments


@dataclasses.dataclass
class Example:
    """A config with one field of each kind the generator handles."""

    model: str  # the model to read
    learning_rate: float = 0.1  # peak learning rate
    epochs: int = 2  # epochs to train
    limit: int | None = None  # at most this many images
    name: str | None = None  # a name for the run, 50% optional
    formats: tuple[str, ...] = ("int8",)  # formats to write
    ids: tuple[int, ...] = (1, 2)  # thread counts
    overwrite: bool = False  # replace a finished run
    progress: bool = True  # progress bars
    nesterov: bool | None = None  # Nesterov momentum
    from_model: str | None = None  # a model to start from
    hidden: float = 0.5


def parser_for(config_class: type = Example, **keywords) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="example", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(parser, config_class, **keywords)
    return parser


def test_help_comes_from_the_comment_that_ends_each_field() -> None:
    comments = field_comments(Example)
    assert comments["learning_rate"] == "peak learning rate"
    assert comments["name"] == "a name for the run, 50% optional"
    assert comments["hidden"] == ""
    assert field_comments(Example) is comments  # read once


def test_types_defaults_and_none() -> None:
    parser = parser_for()
    defaults = parser.parse_args(["--model", "m.keras"])
    assert (defaults.learning_rate, defaults.epochs, defaults.limit, defaults.name) == (0.1, 2, None, None)
    given = parser.parse_args(["--model", "m", "--learning-rate", "0.5", "--epochs", "3", "--limit", "7", "--name", "x"])
    assert (given.learning_rate, given.epochs, given.limit, given.name) == (0.5, 3, 7, "x")
    assert parser.parse_args(["--model", "m", "--formats", "int8, float16", "--ids", "4,8"]).formats == ("int8", "float16")
    assert parser.parse_args(["--model", "m", "--ids", "4,8"]).ids == (4, 8)
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--epochs", "two"])
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a field without a default is a required flag


def test_bool_fields_become_switches() -> None:
    parser = parser_for()
    assert config_from_arguments(Example, parser.parse_args(["--model", "m"])) == Example(model="m")
    switched = config_from_arguments(Example, parser.parse_args(["--model", "m", "--overwrite", "--no-progress", "--nesterov"]))
    assert switched.overwrite is True and switched.progress is False and switched.nesterov is True
    assert config_from_arguments(Example, parser.parse_args(["--model", "m", "--no-nesterov"])).nesterov is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--progress"])  # True by default: only --no-progress exists


def test_help_lists_every_flag_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit):
        parser_for().parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--learning-rate LEARNING_RATE peak learning rate (default: 0.1)", "--limit LIMIT at most this many images (default: None)",
                     "50% optional", "--no-progress turn off: progress bars (default: False)", "--nesterov, --no-nesterov"):  # fmt: skip
        assert fragment in help_text
    assert "the model to read (default" not in help_text  # a required flag has no default to show


def test_overrides_selection_and_round_trip(capsys) -> None:
    flags = {
        "from_model": Flag(spelling="--from", metavar="MODEL"),
        "epochs": Flag(choices=(1, 2, 3)),
        "learning_rate": Flag(default=argparse.SUPPRESS, help="rate (default from the recipe)"),
        "progress": Flag(help="no progress bars"),
        "model": Flag(default="m.keras", show_default=False),
    }
    parser = parser_for(overrides=flags, exclude=("hidden", "formats"))
    arguments = parser.parse_args(["--from", "parent.keras", "--epochs", "3"])
    assert not hasattr(arguments, "learning_rate") and not hasattr(arguments, "hidden")
    config = config_from_arguments(Example, arguments, name="changed")
    assert config == Example(model="m.keras", from_model="parent.keras", epochs=3, name="changed")
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "4"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--from MODEL a model to start from (default: None)" in help_text and "--no-progress no progress bars" in help_text
    assert "rate (default from the recipe)" in help_text and "--hidden" not in help_text and "(default: m.keras)" not in help_text
    only = parser_for(fields=("epochs", "model")).parse_args(["--model", "m"])
    assert sorted(vars(only)) == ["epochs", "model"]


def command_configs() -> dict[str, tuple[list[str], object]]:
    """Command -> (the fewest flags it takes, the config those flags must give: the dataclass's own defaults)."""
    from converters.configs import ConvertConfig, PruneConfig, QatConfig
    from edge_app.app import ClassifyConfig
    from edge_app.collect import CollectConfig
    from training.train_config import TrainConfig

    return {
        "train": ([], TrainConfig()),
        "prune": (["--model", "m.keras"], PruneConfig(model="m.keras")),
        "qat": (["--model", "m.keras"], QatConfig(model="m.keras")),
        "convert": (["--model", "m.keras"], ConvertConfig(model="m.keras")),
        "classify": ([], ClassifyConfig(model=None, source="0")),
        "collect": (["--source", "0", "--label", "cat", "--out", "images"], CollectConfig(source="0", label="cat", out="images")),
    }


@pytest.mark.parametrize("command", ["train", "prune", "qat", "convert", "classify", "collect"])
def test_each_command_flag_defaults_are_its_config_defaults(command: str) -> None:
    flags, expected = command_configs()[command]
    arguments = build_parser().parse_args([command, *flags])
    assert config_from_arguments(type(expected), arguments) == expected
    assert all(field_comments(type(expected)).values()), "every field of a command's config carries its help comment"
