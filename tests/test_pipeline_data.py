"""Which images each pipeline stage uses: the pipeline's data, else the source model's own."""

from __future__ import annotations

from toolkit.pipeline import PipelineConfig, build_stage_configs


def test_data_given_with_a_model_reaches_prune_qat_and_convert(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    config = PipelineConfig(out=str(tmp_path / "run"), model=str(tmp_path / "gpu" / "best.keras"), data=str(images))
    stages = build_stage_configs(config)
    assert stages.train is None
    assert stages.prune.data == stages.qat.data == stages.convert.data == str(images.resolve())


def test_without_data_a_model_keeps_its_own_and_training_defaults_to_cifar10(tmp_path):
    from_model = build_stage_configs(PipelineConfig(out=str(tmp_path / "a"), model=str(tmp_path / "best.keras")))
    assert from_model.prune.data is None and from_model.convert.data is None  # the source run's, read when the stage runs
    trained = build_stage_configs(PipelineConfig(out=str(tmp_path / "b")))
    assert trained.train.data == "cifar10"


def test_a_model_without_its_run_folder_rebuilds_the_split_its_card_records(tmp_path):
    from types import SimpleNamespace

    from converters.finetune import resolve_data_settings
    from toolkit.model_card import ModelCard

    card = ModelCard(labels=["a", "b"], input_size=[32, 32, 3], mean=[0.5] * 3, std=[0.25] * 3, dataset="cifar10",
                     metrics={"validation_fraction": 0.2, "split_seed": 3, "train_images": 1600, "validation_images": 400})
    source = SimpleNamespace(path=tmp_path / "model.keras", card=card, run_config={})
    settings = resolve_data_settings(source, {"batch_size": 64})
    assert (settings.data, settings.validation_fraction, settings.seed, settings.limit) == ("cifar10", 0.2, 3, 2000)
    assert settings.batch_size == 64
