"""`toolkit convert`: TFLite exports (int8, float16, dynamic, float32) with a parity report (converters.convert)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit convert``."""
    parser.add_argument("--model", required=True, metavar="M", help="Keras 3 model (.keras with card); a QAT run's model.keras converts its QAT twin")
    parser.add_argument("--out", default="runs/convert", help="folder for model_<format>.tflite, cards, parity.json, report.json")
    formats = parser.add_argument_group("formats (none given: all four)")
    formats.add_argument("--int8", action="store_true", help="full-integer int8 (TFLITE_BUILTINS_INT8 only)")
    formats.add_argument("--float16", action="store_true", help="float16 weights")
    formats.add_argument("--dynamic", action="store_true", help="dynamic range: int8 weights, float activations")
    formats.add_argument("--float32", action="store_true", help="plain float32")
    parser.add_argument("--io", choices=("int8", "uint8", "float32"), default="int8", help="input and output type of the int8 model")
    parser.add_argument("--calib", default=None, metavar="DATA", help="calibration images (default: the source run's training split)")
    parser.add_argument("--calib-samples", type=int, default=500, help="calibration images to use; fewer available is an error (a QAT model, whose ranges they do not set, takes what there is)")
    parser.add_argument("--data", default=None, help="data for held-out parity images (default: the source run's)")
    parser.add_argument("--limit", type=int, default=None, help="the subset the source was trained on (default: the source run's)")
    parser.add_argument("--parity-samples", type=int, default=1000, help="held-out images for the parity report (0: whole validation split)")
    parser.add_argument("--max-drop", type=float, default=1.0, help="fail when a converted model's top-1 drops more points than this")
    parser.add_argument("--no-labels", action="store_true", help="do not embed labels and card as TFLite metadata")
    parser.add_argument("--edgetpu", action="store_true", help="also compile the int8 model with edgetpu_compiler (when installed)")
    parser.add_argument("--seed", type=int, default=0, help="picks the calibration images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a conversion already in --out (its other formats are removed)"
    )


def selected_formats(args: argparse.Namespace) -> tuple[str, ...]:
    from converters.convert import FORMATS

    chosen = tuple(name for name in FORMATS if getattr(args, name))
    return chosen or FORMATS


def run(args: argparse.Namespace) -> int:
    """Convert, print sizes and parity; exit 3 when parity fails (the files are kept)."""
    from converters.convert import ConvertConfig, check_parity, convert

    result = convert(
        ConvertConfig(
            model=args.model, out=args.out, formats=selected_formats(args), io=args.io, calib=args.calib,
            calib_samples=args.calib_samples, data=args.data, limit=args.limit, parity_samples=args.parity_samples,
            max_drop=args.max_drop, embed_labels=not args.no_labels, edgetpu=args.edgetpu, seed=args.seed,
            progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    )
    print(format_table(result.report, result.parity))
    edgetpu = result.report.get("edgetpu")
    if edgetpu:
        first = edgetpu["first_cpu_operator"]
        print(
            "edge TPU  all operators map to the Edge TPU"
            if first is None
            else f"edge TPU  operator {first['index']} {first['operator']} would fall back to the CPU: {first['reason']}"
        )
        if edgetpu.get("compiled"):
            print(f"compiled  {edgetpu['compiled']}")
    if result.parity_path:
        print(f"parity    {result.parity_path}")
    print(f"report    {result.report_path}")
    check_parity(result, args.max_drop)
    return 0


def format_table(report: dict, parity: dict) -> str:
    """Size, sparsity and parity of each exported format as a text table."""
    rows = [f"{'format':<9} {'MB':>7} {'gzip MB':>8} {'sparsity':>9} {'top-1':>7} {'gap pt':>7} {'agree':>7}"]
    if parity:
        rows.append(f"{'keras':<9} {'':>7} {'':>8} {'':>9} {parity['reference_top1']:>7.2%} {'':>7} {'':>7}")
    for name, entry in report["formats"].items():
        measured = parity.get("formats", {}).get(name, {}) if parity else {}
        top1 = f"{measured['top1']:.2%}" if measured else "-"
        gap = f"{measured['gap_points']:+.2f}" if measured else "-"
        agreement = f"{measured['agreement']:.2%}" if measured else "-"
        rows.append(
            f"{name:<9} {entry['sizes']['raw'] / 1e6:>7.3f} {entry['sizes']['gzip'] / 1e6:>8.3f} "
            f"{entry['sparsity']['overall']:>9.2%} {top1:>7} {gap:>7} {agreement:>7}"
        )
    return "\n".join(rows)
