"""The blog's experiments, one module each, each taking runs and writing its result (evaluate,
figures, attack_curves, transfer, background, blackbox, claims), and the helpers they share, each in a
module of its own (accuracy, difficulty, pairs, fooling, templates, explore, toy); an experiment
never imports another. Imports linfool.core and linfool.model."""
