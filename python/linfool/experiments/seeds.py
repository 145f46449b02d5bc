"""`make claims SEEDS=N`: the claims that depend on training (smoother templates, lower accuracy,
harder to fool with more regularization), repeated over N seeds of the sweep.

The tests of the claims table cover the sampling of the val images and pairs, not the randomness of
training. Here the sweep is trained again N - 1 times with Caffe's random_seed = 1701 + k (k = 1 ..
N - 1; k = 0 is the runs themselves): in linfool's nets the seed changes the Gaussian initialisation
only (the data order is fixed by the LMDB, shuffled once at build time, and nothing else draws random
numbers), so the spread over seeds is the training variance the single-run rows leave out. Each seed's
runs are runs/<run>_seed<k>/ (left alone when trained already with these settings), measured as the
claims measure the runs: every val record (make eval), the templates, and the attack curves on the
same (image, target) pairs as the runs' own.

    spread(group, n_seeds) -> {'seeds': [...], 'rows': {claim: [per seed: verdict, p, value]}, 'summary'}
"""

import numpy as np

from linfool.core import conventions, results, runs
from linfool.experiments import accuracy, difficulty
from linfool.model import train, weights

FIRST_SEED = conventions.SEED  # prototxt/solver.prototxt's random_seed: seed k trains with FIRST_SEED + k


def seed_run(run, k):
    """runs/<run>_seed<k>: run's seed k (k = 0: the run itself)."""
    return run if k == 0 else runs.Run.named(f"{run.name}_seed{k}")


def cost(group, n_seeds, curves) -> str:
    """One line: what SEEDS=N costs before it starts."""
    trains = (n_seeds - 1) * len(group)
    forwards = trains * curves["forwards"]
    return (
        f"seeds: {n_seeds} seeds of {', '.join(r.name for r in group)}: {trains} `caffe train` runs like theirs "
        f"(left alone when trained already), each evaluated on every val record and attacked on the same "
        f"{curves['pairs']} pairs ({forwards:,} pycaffe forwards)"
    )


def train_seed(run, k, command):
    """caffe train the run's seed k with its recorded data set, solver, overlays and settings."""
    info = run.info
    code = train.train(
        f"{run.name}_seed{k}",
        data=info["data"],
        solver_file=info["solver"],
        overlays=info["overlays"],
        settings=[*info["settings"], f"random_seed={FIRST_SEED + k}"],
        command=command,
        owned=True,
    )
    if code != 0:
        raise runs.RunError(f"caffe train of {run.name}_seed{k} exited with {code}; see its train.log")
    return runs.Run.named(f"{run.name}_seed{k}")


def measure(run, curves, command):
    """(metrics, attack curves) of one seed run, on the sample the runs' own attack curves used."""
    metrics = accuracy.measure(run, command=command)
    return metrics, difficulty.attack_curves(run, n_images=curves["images"], pairs=curves["pairs"], quiet=True)


def spread(low, high, n_seeds, low_curves, high_curves, rows_of, command):
    """The training-dependent rows for seeds 0 .. n_seeds - 1 of (low, high): `rows_of(W, metrics,
    curves)` gives a seed's rows (claims' functions, with the pair (low, high) of that seed); returns
    the per-seed rows and a summary per claim: how many seeds give each verdict, and the effect's
    mean and standard deviation over seeds."""
    per_seed, found = [], {}
    for k in range(n_seeds):
        pair = [seed_run(r, k) for r in (low, high)]
        if k == 0:
            measured = [(results.read_metrics(r), c) for r, c in zip(pair, (low_curves, high_curves))]
        else:
            print(f"== seeds: seed {k} (random_seed {FIRST_SEED + k})", flush=True)
            pair = [train_seed(r, k, command) for r in (low, high)]
            measured = [measure(r, c, command) for r, c in zip(pair, (low_curves, high_curves))]
        W = [weights.load(r)["W"] for r in pair]
        rows = rows_of(W, [m for m, _ in measured], [c for _, c in measured], [r.name for r in pair])
        per_seed.append({"seed": FIRST_SEED + k, "runs": [r.name for r in pair], "rows": rows})
        for row in rows:
            found.setdefault(row["claim"], []).append(row)
    return {"seeds": [FIRST_SEED + k for k in range(n_seeds)], "per_seed": per_seed, "summary": summary(found)}


def summary(found) -> dict:
    """{claim: {'verdicts': {verdict: seeds}, 'effect_mean', 'effect_sd', 'n_seeds'}}."""
    out = {}
    for claim, rows in found.items():
        effects = [r["effect"]["value"] for r in rows if r.get("effect") and r["effect"].get("value") is not None]
        verdicts = {}
        for r in rows:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        out[claim] = {
            "verdicts": verdicts,
            "n_seeds": len(rows),
            "effect_of": rows[0].get("effect_of", ""),
            "effect_mean": float(np.mean(effects)) if effects else None,
            "effect_sd": float(np.std(effects, ddof=1)) if len(effects) > 1 else None,
            "values": [r["value"] for r in rows],
        }
    return out


def table(result) -> str:
    """The printed seed table: per claim, the verdicts over seeds and the effect's spread."""
    lines = [f"over {len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}):"]
    for claim, found in result["summary"].items():
        verdicts = ", ".join(f"{v}: {n}" for v, n in found["verdicts"].items())
        effect = (
            f"effect {found['effect_mean']:.3g} +- {found['effect_sd']:.2g} (sd over seeds)"
            if found["effect_sd"] is not None
            else ""
        )
        lines.append(f"  {claim}: {verdicts}; {effect}")
        lines += [f"      seed {s}: {v}" for s, v in zip(result["seeds"], found["values"])]
    lines.append("  (each seed tested as in the table, by the same rule; the seed changes Caffe's initialisation only)")
    return "\n".join(lines)
