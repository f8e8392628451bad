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
