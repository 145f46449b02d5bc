"""`make eval`: top-1 / top-5 of each run's newest snapshot with pycaffe, over EVERY val record.

    python -m linfool eval --run NAME [--low RUN --high RUN] [--val-per-class N] [--train-sample 10000]
    python -m linfool eval --all               # every trained run under runs/

Val: every record of the val LMDB (ImageNet: all 50,000, as the blog's 3.0 % / 10 % are), or, only
when --val-per-class is given, a seeded class-balanced subset, said so in metrics.json and the
table. Train: a seeded uniform random sample of --train-sample records (the whole set when smaller),
its size stated. Records stream in batches (linfool.core.records): memory does not grow with the LMDB.
Top-5 is top-k with k = min(5, classes) (a 3-class set reports top-3). Writes runs/<name>/metrics.json
(with the snapshot and data set it measured) and prints a table. Other stages read it through
read_metrics, which refuses a metrics.json of another snapshot or data set (never re-evaluates).
"""

import sys

from linfool.core import cli, paths, runs, stages
from linfool.experiments.accuracy import measure, table


def main(argv=None) -> int:
    args = stages.parse("eval", argv)

    def body():
        if args.all:
            group = [
                runs.Run(p.parent)
                for p in sorted({p.parent for p in paths.RUNS.glob("*/*_iter_*.caffemodel")})
                if (p.parent / "run.json").is_file()
            ]
            if not group:
                raise runs.RunError("no trained run in runs/; run `make train` first")
        else:
            group = runs.group(args.run, args.low, args.high)
        command = stages.command("eval", args)
        with runs.locked(write=group):
            rows = [
                measure(run, val_per_class=args.val_per_class, train_sample=args.train_sample, command=command)
                for run in group
            ]
        print(table(rows))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
