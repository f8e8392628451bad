"""`toolkit convert`: TFLite exports (int8, float16, dynamic, float32) with a parity report (converters.convert)."""

from __future__ import annotations

import argparse

from toolkit.flags import Flag, add_dataclass_arguments, config_from_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit convert``: one per ConvertConfig field, its formats as one switch each."""
    from converters.configs import IO_TYPES, ConvertConfig

    flags = {
        "model": Flag(metavar="M"),
        "io": Flag(choices=IO_TYPES),
        "calib": Flag(metavar="DATA"),
        "embed_labels": Flag(spelling="--no-labels", help="do not embed labels and card as TFLite metadata"),
        "progress": Flag(help="no progress bars"),
    }
    add_dataclass_arguments(parser, ConvertConfig, flags, exclude=("formats",))
    formats = parser.add_argument_group("formats (none given: all four)")
    formats.add_argument("--int8", action="store_true", help="full-integer int8 (TFLITE_BUILTINS_INT8 only)")
    formats.add_argument("--float16", action="store_true", help="float16 weights")
    formats.add_argument("--dynamic", action="store_true", help="dynamic range: int8 weights, float activations")
    formats.add_argument("--float32", action="store_true", help="plain float32")


def run(args: argparse.Namespace) -> int:
    """Convert, print sizes and parity; exit 3 when parity fails (the files are kept)."""
    from converters.configs import FORMATS, ConvertConfig
    from converters.convert import check_parity, convert

    formats = tuple(name for name in FORMATS if getattr(args, name)) or FORMATS  # no switch given: all four
    result = convert(config_from_arguments(ConvertConfig, args, formats=formats))
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
        measured = parity.get("formats", {}).get(name)
        top1, gap, agreement = ("-",) * 3 if not measured else (
            f"{measured['top1']:.2%}", f"{measured['gap_points']:+.2f}", f"{measured['agreement']:.2%}"
        )
        rows.append(
            f"{name:<9} {entry['sizes']['raw'] / 1e6:>7.3f} {entry['sizes']['gzip'] / 1e6:>8.3f} "
            f"{entry['sparsity']['overall']:>9.2%} {top1:>7} {gap:>7} {agreement:>7}"
        )
    return "\n".join(rows)
