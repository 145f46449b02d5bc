"""tools/caffe_patches/: Caffe's changes as unified diffs, each with its reason, applied in order by
tools/caffe_recipe.sh (a dry run first; a patch that does not apply is one line naming it and the file)."""

import shutil
import subprocess
import tarfile

import pytest

from linfool.core import paths

pytestmark = pytest.mark.fast
PATCHES = sorted((paths.ROOT / "tools" / "caffe_patches").glob("*.patch"))


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_each_patch_says_why_what_and_which_tests_cover_it(patch):
    text = patch.read_text()
    header, _, diff = text.partition("\n--- a/")
    assert patch.name[:3].rstrip("-").isdigit() and len(header.splitlines()) >= 4
    assert "Why:" in header and "What" in header and "Covered by:" in header
    assert diff and "\n+++ b/" in "\n--- a/" + diff and "\n@@ " in text
    assert max(map(len, text.splitlines())) < 200  # readable as a diff, not one substitution per line


def _sdist(tmp_path, text):
    """A stand-in sdist (brocolli-caffe-9.0.2/src/caffe/solver.cpp holding `text`) as a tarball."""
    tree = tmp_path / "sdist" / "brocolli-caffe-9.0.2" / "src" / "caffe"
    tree.mkdir(parents=True)
    (tree / "solver.cpp").write_text(text)
    tarball = tmp_path / "sdist.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "sdist" / "brocolli-caffe-9.0.2", arcname="brocolli-caffe-9.0.2")
    return tarball


def _apply(tmp_path, tarball, patches, blas_dir=None):
    work = tmp_path / "work"
    work.mkdir()
    script = (
        'step() { :; }; die() { echo "ERROR: $*" >&2; exit 1; }; source tools/caffe_recipe.sh; '
        "BLAS_DIR=${BLAS:-$BLAS_DIR}; "
        'TARBALL=$1; shift; PATCHES=("$@"); CUDA_DIR=; OPTIONS=test; PY_VER=3.11; caffe_source "$WORK"'
    )
    return subprocess.run(
        ["bash", "-c", script, "apply", str(tarball), *map(str, patches)],
        cwd=paths.ROOT,
        env={"PATH": "/usr/bin:/bin", "WORK": str(work), **({"BLAS": str(blas_dir)} if blas_dir else {})},
        capture_output=True,
        text=True,
    ), work / "brocolli-caffe-9.0.2"


def _patch(tmp_path, name, old, new):
    patch = tmp_path / name
    patch.write_text(
        f"Why: a test.\n\n--- a/src/caffe/solver.cpp\n+++ b/src/caffe/solver.cpp\n@@ -1,2 +1,2 @@\n one\n-{old}\n+{new}\n"
    )
    return patch


@pytest.mark.skipif(
    shutil.which("patch") is None, reason="no patch program: a runtime image (Docker), where Caffe comes built"
)
def test_patches_apply_in_order_and_one_that_does_not_is_one_line(tmp_path):
    tarball = _sdist(tmp_path / "a", "one\ntwo\n")
    first, second = _patch(tmp_path, "01-a.patch", "two", "three"), _patch(tmp_path, "02-b.patch", "three", "four")
    done, src = _apply(tmp_path / "a", tarball, [first, second])
    assert done.returncode == 0, done.stderr
    assert (src / "src/caffe/solver.cpp").read_text() == "one\nfour\n"
    assert (src / "Makefile.config").is_file()

    stale = _patch(tmp_path, "03-c.patch", "five", "six")  # written against another source
    failed, src = _apply(tmp_path / "b", _sdist(tmp_path / "b", "one\ntwo\n"), [first, stale])
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1
    assert failed.stderr.startswith("ERROR: 03-c.patch does not apply to brocolli-caffe 9.0.2: src/caffe/solver.cpp:")
    assert "FAILED" in failed.stderr
    assert not (src / "Makefile.config").exists()  # nothing half-patched goes on to a build
    assert not list(src.rglob("*.rej")) and not list(src.rglob("*.orig"))


def test_without_the_openmp_openblas_the_build_stops_in_one_line_before_unpacking(tmp_path):
    """A box where OpenBLAS's OpenMP build could not be installed: one line saying what to install,
    nothing unpacked (tools/caffe_recipe.sh links that build by its rpath)."""
    done, src = _apply(tmp_path, _sdist(tmp_path, "one\ntwo\n"), [], blas_dir=tmp_path / "no-openblas")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (
        done.stderr.startswith("ERROR: OpenBLAS's OpenMP build is not installed")
        and "libopenblas-openmp-dev" in done.stderr
    )
    assert not src.exists()
