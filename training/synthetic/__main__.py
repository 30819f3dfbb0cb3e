"""``python -m training.synthetic OUT ...``: the same as ``moee synth OUT ...``."""

import argparse

import training.synthetic
from training.synthetic.dataset import add_synth_arguments, run_synth


def _main() -> int:  # pragma: no cover - convenience entry
    parser = argparse.ArgumentParser(prog="python -m training.synthetic",
                                     description=(training.synthetic.__doc__ or "").splitlines()[0])
    add_synth_arguments(parser)
    return run_synth(parser.parse_args())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
