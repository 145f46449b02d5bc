"""linfool's development tools, outside the product package: speed tables (bench, bench_scale), the
GPU box check (gpu_check) and the ImageNet rehearsal tree (rehearsal)."""
