"""Bad input gets a clear error, no traceback, the right exit code, before any computing."""

from __future__ import annotations

import numpy as np
import pytest

from failure_helpers import leftovers, pipeline, run, write_raster

COPY = "{name: copy, map: failing_ops.identity, inputs: [scene]}"


def check(done, code, *fragments):
    assert done.returncode == code, (done.stdout, done.stderr)
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "map copy" not in done.stdout  # nothing was computed


@pytest.mark.parametrize("make, code, fragments", [
    (lambda d: pipeline(d, COPY, inputs="{scene: nowhere.tif}"), 3, ["p.yaml:2", "nowhere.tif"]),
    (lambda d: (d / "notes.tif").write_text("plain text") and
     pipeline(d, COPY, inputs="{scene: notes.tif}"), 3, ["notes.tif", "as a raster"]),
    (lambda d: (d / "p.yaml").write_text("version: 1\nsteps: [a, b\n"), 3, ["p.yaml:", "YAML"]),
    (lambda d: (d / "p.yaml").write_text("- just\n- a list\n"), 3, ["p.yaml", "mapping"]),
    (lambda d: (d / "p.yaml").write_bytes(b"version: 1\n\xff\xfe\x00bad"), 3, ["p.yaml"]),
    (lambda d: pipeline(d, "{name: copy, map: failing_ops.identity, inputs: [scene], margin: -4}"),
     3, ["p.yaml:4", "margin"]),
    (lambda d: pipeline(d, COPY, extra="tiling: {tile_size: 0}\n"), 3, ["p.yaml:2", "tile_size"]),
    (lambda d: pipeline(d, COPY, extra="tiling: {tile_size: -64}\n"), 3, ["tile_size"]),
    (lambda d: pipeline(d, COPY, extra="workers: 0\n"), 3, ["p.yaml:2", "workers"]),
], ids=["missing-file", "not-a-raster", "not-yaml", "not-a-mapping", "not-utf8",
        "negative-margin", "zero-tile-size", "negative-tile-size", "zero-workers"])
def test_bad_pipelines_and_inputs(run_dir, make, code, fragments):
    make(run_dir)
    done, _ = run(run_dir, "run", "p.yaml")
    check(done, code, *fragments)
    assert not (run_dir / "out").exists()


def test_yaml_alias_bomb_is_answered_quickly(run_dir):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    (run_dir / "p.yaml").write_text("version: 1\n" + "\n".join(lines) + "\n")
    done, seconds = run(run_dir, "validate", "p.yaml")
    assert done.returncode == 3 and seconds < 10
    assert "Traceback" not in done.stderr


def test_truncated_geotiff_fails_while_reading(run_dir):
    data = np.random.default_rng(0).integers(1, 255, (1, 512, 512), dtype=np.uint8)
    full = write_raster(run_dir / "full.tif", data, tiled=True, blockxsize=128, blockysize=128,
                        compress="deflate")
    raw = full.read_bytes()
    (run_dir / "cut.tif").write_bytes(raw[: len(raw) // 2])
    pipeline(run_dir, COPY, inputs="{scene: cut.tif}")
    done, _ = run(run_dir, "run", "p.yaml", "-w", "2")
    assert done.returncode in (1, 3), done.stderr
    assert "cut.tif" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "out").exists() and leftovers(run_dir) == []


def test_output_folder_under_a_file(run_dir):
    (run_dir / "blocker").write_text("a file where a folder should be")
    pipeline(run_dir, COPY, outputs="{copy: blocker/sub/result.tif}")
    done, _ = run(run_dir, "run", "p.yaml")
    assert done.returncode in (1, 3)
    assert "blocker" in done.stderr and "Traceback" not in done.stderr
    assert "map copy" not in done.stdout


def test_huge_margin_still_gives_the_whole_image_result(run_dir):
    pipeline(run_dir, "{name: copy, map: failing_ops.identity, inputs: [scene], margin: 1000000000}")
    done, _ = run(run_dir, "run", "p.yaml", "-q")
    assert done.returncode == 0, done.stderr
    assert (run_dir / "out" / "result.tif").exists()


def test_unicode_and_spaces_in_names_and_paths(run_dir):
    folder = run_dir / "données d'entrée"
    folder.mkdir()
    (run_dir / "small.tif").rename(folder / "scène 1.tif")
    (run_dir / "p.yaml").write_text(
        "version: 1\nname: chaîne été\n"
        "inputs: {\"scène\": \"données d'entrée/scène 1.tif\"}\n"
        "steps:\n  - {name: \"copie n°1\", map: failing_ops.identity, inputs: [\"scène\"]}\n"
        "outputs: {\"copie n°1\": \"sortie été/résultat.tif\"}\n", encoding="utf-8")
    done, _ = run(run_dir, "run", "p.yaml", "-w", "2")
    assert done.returncode == 0, done.stderr
    assert (run_dir / "sortie été" / "résultat.tif").exists()
    assert "copie n°1" in done.stdout


@pytest.mark.parametrize("callable_, fragments", [
    ("two_results", ["step 'bad', tile ", "returned 2 image(s), expected 1"]),
    ("short_result", ["step 'bad', tile ", "has shape (2, 49, 50), expected (2, 50, 50)"]),
    ("float_result", ["step 'bad', tile ", "dtype float64 cannot be cast safely to the output dtype uint16"]),
])
def test_wrong_results_name_step_and_tile(run_dir, callable_, fragments):
    pipeline(run_dir, f"{{name: bad, map: failing_ops.{callable_}, inputs: [scene], "
             "profile: failing_ops.keep_dtype}", extra="tiling: {tile_size: 50}\n")
    done, _ = run(run_dir, "run", "p.yaml", "-w", "2")
    assert done.returncode == 1
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr
    assert not (run_dir / "out").exists() and leftovers(run_dir) == []
