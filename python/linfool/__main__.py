"""`python -m linfool STAGE [options]`: every stage of the pipeline from one entry point (the make
targets call these; `python -m linfool --help` lists them, `python -m linfool STAGE --help` a stage's
options)."""

import importlib
import sys

STAGES = {
    "data": ("linfool.data.build", "build train/val LMDBs, mean and labels (make data)"),
    "train": ("linfool.model.train", "caffe train a run, or a sweep (make train, make sweep)"),
    "decay-search": ("linfool.model.decay_search", "a deeper model's weight-decay search (make decay-search)"),
    "curves": ("linfool.model.curves", "training curves from a run's train.log"),
    "weights": ("linfool.model.weights", "weights.npz from a run's newest snapshot (make weights)"),
    "eval": ("linfool.experiments.evaluate", "top-1/top-k over every val record (make eval)"),
    "figures": ("linfool.experiments.figures", "the blog's figures and the explore data (make figures)"),
    "attack-curves": ("linfool.experiments.attack_curves", "fooled fraction vs Linf budget (make attack-curves)"),
    "transfer": ("linfool.experiments.transfer", "fooling images of one run on the others (make transfer)"),
    "background": (
        "linfool.experiments.background",
        "background-class rounds with Caffe fine-tuning (make background)",
    ),
    "blackbox": ("linfool.experiments.blackbox", "fooling with scores only (make blackbox)"),
    "forest": ("linfool.experiments.forest", "a random forest fooled with scores only (make forest)"),
    "deep": ("linfool.experiments.deep", "deeper Caffe models fooled by backprop (make deep)"),
    "fool": ("linfool.experiments.fool_model", "fool any Caffe classifier by backprop (make fool)"),
    "claims": ("linfool.experiments.claims", "the blog's claims with verdicts (make claims)"),
    "report": ("linfool.report.page", "the HTML report (make report)"),
    "toy": ("linfool.experiments.toy", "the blog's toy example, printed"),
    "lmdb": ("linfool.data.lmdb_builder", "build one LMDB from a Caffe list file"),
    "records": ("linfool.core.records", "stream an LMDB once and describe it"),
    "synthetic": ("linfool.data.synthetic", "write the embedded synthetic image tree"),
    "caffe": ("linfool.core.caffe_env", "where Caffe is, its tools, the GPUs it sees (make device-query)"),
}


def usage() -> str:
    width = max(map(len, STAGES))
    return "usage: python -m linfool STAGE [options]\n\nstages:\n" + "\n".join(
        f"  {name:<{width}}  {about}" for name, (_, about) in STAGES.items()
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in STAGES:
        print(
            f"ERROR: no stage {argv[0]!r}; the stages are: {', '.join(STAGES)} (python -m linfool --help)",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(STAGES[argv[0]][0])
    sys.argv = [f"python -m linfool {argv[0]}", *argv[1:]]
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
