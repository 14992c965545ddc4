"""What every command line of the project shares: the flag vocabulary (--ckpt, --weights student|teacher, --data
for a corpus root, --out, --max-utterances, comma lists) and the refusal of a flag's old spelling."""

from __future__ import annotations

import argparse

# old spelling -> the flag that replaced it, refused with a message naming the new one wherever a tool lists it
RENAMED_FLAGS = {
    "--init": "--ckpt",
    "--checkpoint": "--ckpt",
    "--max-files": "--max-utterances",
    "--probe-utterances": "--max-utterances",
    "--files": "--max-utterances",
    "--data": "--manifest-dir",
    "--seed": "--corpus-seed",
}


class _Renamed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {RENAMED_FLAGS[option_string]}")


def refuse_old_spellings(parser: argparse.ArgumentParser, *old: str) -> None:
    """Make each of `old` (keys of RENAMED_FLAGS) an error that names its replacement; hidden from --help."""
    for flag in old:
        parser.add_argument(flag, action=_Renamed, nargs="?", help=argparse.SUPPRESS)


def add_overrides_flag(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set SECTION.KEY=VALUE` (repeatable, into args.overrides): a config value for this run, in YAML syntax;
    `example` is shown in the help."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one config value (YAML syntax), repeatable, e.g. --set {example}",
    )


def comma_list(text: str) -> list[str]:
    """'a,b,,c' -> ['a', 'b', 'c']."""
    return [item.strip() for item in text.split(",") if item.strip()]
