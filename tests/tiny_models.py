"""One tiny trained All-CNN-C in every format the toolkit reads, built once per test session."""

from __future__ import annotations

import sys
from pathlib import Path


def model_paths(directory: Path) -> dict[str, Path]:
    """Where :func:`build_tiny_models` writes each model and folder, by key."""
    run, convert = Path(directory) / "run", Path(directory) / "convert"
    return {"run": run, "convert": convert, "keras": run / "best.keras", "int8": convert / "model_int8.tflite",
            "float32": convert / "model_float32.tflite", "uint8": Path(directory) / "uint8" / "model_uint8.tflite"}  # fmt: skip


def build_tiny_models(directory: Path, sample_dir: Path, epochs: int = 6) -> dict[str, Path]:
    """A width-0.125 All-CNN-C (no dropout: it learns in seconds) trained on the committed sample.

    Writes ``run/best.keras`` (Keras 3, as ``toolkit train`` saves it) and, converted from its
    tf_keras twin, ``convert/model_int8.tflite`` (int8 I/O, what ``toolkit convert --int8`` ships),
    ``convert/model_float32.tflite`` and ``uint8/model_uint8.tflite`` (uint8 I/O, not a benchmark row),
    each with its card. Returns those paths under the keys ``keras``, ``int8``, ``float32`` and ``uint8``,
    and the two folders under ``run`` and ``convert``.
    """
    from converters.bridge import twin_from_keras3
    from converters.convert import convert_model, tensor_quantization
    from toolkit import preprocessing
    from toolkit.model_card import ModelCard, save_card
    from training.allcnn import ModelConfig, create_model
    from training.backend import keras
    from training.data import channel_statistics, load_image_folder

    dataset = load_image_folder(sample_dir)
    mean, std = channel_statistics(dataset.images)
    inputs = preprocessing.normalize(dataset.images, mean, std)
    keras.utils.set_random_seed(0)
    config = ModelConfig(width=0.125, input_dropout=0.0, stage_dropout=0.0)
    model = create_model(config, keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(inputs, dataset.labels, epochs=epochs, batch_size=32, verbose=0)

    paths = model_paths(directory)
    for name in ("keras", "int8", "uint8"):
        paths[name].parent.mkdir(parents=True)
    card = ModelCard(labels=dataset.class_names, input_size=list(config.input_shape), mean=mean, std=std,
                     architecture=config.to_dict(), dataset=dataset.source, format="keras", history=["train"])  # fmt: skip
    model.save(paths["keras"])
    save_card(card, paths["keras"])

    twin = twin_from_keras3(model, config)
    for io_type in ("int8", "uint8", "float32"):
        if io_type == "float32":
            data, parsed = convert_model(twin, "float32")
        else:
            data, parsed = convert_model(twin, "int8", inputs[::3], io=io_type)
        paths[io_type].write_bytes(data)
        save_card(card.replace(format="tflite-float32" if io_type == "float32" else "tflite-int8", history=["train", "convert"],
                               input_quantization=tensor_quantization(parsed.inputs[0]),  # the interpreter's reading is checked against it
                               output_quantization=tensor_quantization(parsed.outputs[0])), paths[io_type])  # fmt: skip
    return paths


if __name__ == "__main__":  # conftest builds them in a second process: python tests/tiny_models.py OUT SAMPLE_DIR
    build_tiny_models(Path(sys.argv[1]), Path(sys.argv[2]))
