"""One tiny trained All-CNN-C in every format the toolkit reads, built once per test session."""

from __future__ import annotations

from pathlib import Path


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
    inputs = preprocessing.prepare_batch(dataset.images, mean, std)
    keras.utils.set_random_seed(0)
    config = ModelConfig(width=0.125, input_dropout=0.0, stage_dropout=0.0)
    model = create_model(config, keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(inputs, dataset.labels, epochs=epochs, batch_size=32, verbose=0)

    run, convert, uint8 = (Path(directory) / name for name in ("run", "convert", "uint8"))
    for folder in (run, convert, uint8):
        folder.mkdir(parents=True)
    card = ModelCard(labels=dataset.class_names, input_size=list(config.input_shape), mean=mean, std=std,
                     architecture=config.to_dict(), dataset=dataset.source, format="keras", history=["train"])  # fmt: skip
    paths = {"run": run, "convert": convert, "keras": run / "best.keras"}
    model.save(paths["keras"])
    save_card(card, paths["keras"])

    twin = twin_from_keras3(model, config)
    for io_type in ("int8", "uint8", "float32"):
        paths[io_type] = (uint8 if io_type == "uint8" else convert) / f"model_{io_type}.tflite"
        if io_type == "float32":
            data, parsed = convert_model(twin, "float32")
        else:
            data, parsed = convert_model(twin, "int8", inputs[::3], io=io_type)
        paths[io_type].write_bytes(data)
        save_card(card.replace(format="tflite-float32" if io_type == "float32" else "tflite-int8", history=["train", "convert"],
                               input_quantization=tensor_quantization(parsed.inputs[0]),  # the interpreter's reading is checked against it
                               output_quantization=tensor_quantization(parsed.outputs[0])), paths[io_type])  # fmt: skip
    return paths
