"""The out-of-core chain at our users' scale, once, under a budget: a 65,536 x 65,536 float32
surface model (16 GiB in memory), ``ooc_chain.yaml`` (fill nodata -> 3 x 3 median -> gaussian ->
GeoTIFF, and its statistics) with ``--memory 2GiB`` and 2 workers, measured as one run of the
``eoscale`` command: wall, CPU of the tree and of the main process, how busy the cores were
(CPU / (workers x wall)), peak PSS against the plan's estimate, and the cores other work took.

    python benchmarks/ooc_large.py [--size 65536] [--memory 2GiB] [--workers 2]

The input is made once from the 8192 x 8192 surface model of datagen.py, repeated 8 x 8 (a VRT
copied into a tiled deflate BigTIFF): generating the whole model in memory would not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import rasterio
import rasterio.shutil

from datagen import DATA_DIR, ensure_dsm
from measure import run_measured, wait_for_quiet
from run import HERE, machine

OUT = HERE / "results" / "out"
_ESTIMATE = re.compile(r"estimated ([0-9.]+) (MiB|GiB)")


def repeated_dsm(size: int, base: int = 8192) -> Path:
    """A ``size`` x ``size`` surface model: the ``base`` one repeated, copied into one file."""
    path = DATA_DIR / f"dsm_{size}.tif"
    if path.exists():
        return path
    source = ensure_dsm(base)
    with rasterio.open(source) as dataset:
        wkt, nodata = dataset.crs.to_wkt(), dataset.nodata
    copies = size // base
    sources = "\n".join(
        f'<ComplexSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{base}" ySize="{base}"/>'
        f'<DstRect xOff="{c * base}" yOff="{r * base}" xSize="{base}" ySize="{base}"/>'
        f'<NODATA>{nodata}</NODATA></ComplexSource>'
        for r in range(copies) for c in range(copies))
    vrt = DATA_DIR / f"dsm_{size}_mosaic.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{wkt}</SRS>'
        f'<GeoTransform>600000.0, 0.5, 0.0, 4800000.0, 0.0, -0.5</GeoTransform>'
        f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>{nodata}</NoDataValue>'
        f'{sources}</VRTRasterBand></VRTDataset>\n')
    partial = path.with_name(f".{path.name}.partial")
    with rasterio.Env(GDAL_CACHEMAX=512):
        rasterio.shutil.copy(vrt, partial, driver="GTiff", tiled=True, blockxsize=512,
                             blockysize=512, compress="deflate", num_threads="ALL_CPUS",
                             bigtiff="YES")
    partial.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--memory", default="2GiB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ooc_large.json")
    args = parser.parse_args()
    dsm = repeated_dsm(args.size)
    OUT.mkdir(parents=True, exist_ok=True)
    smooth, stats = OUT / f"ooc{args.size}_smooth.tif", OUT / f"ooc{args.size}_stats.json"
    command = [sys.executable, "-m", "eoscale", "run", str(HERE / "ooc_chain.yaml"), "--overwrite",
               "--input", f"dsm={dsm}", "--output", f"smooth={smooth}", "--output",
               f"stats={stats}", "--memory", args.memory, "--scratch", str(OUT),
               "-w", str(args.workers)]
    waited, busy = wait_for_quiet(0.3, 120)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    done = run_measured(command, interval=0.5, cwd=str(HERE),
                        env=dict(os.environ, COLUMNS="300"))
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    found = _ESTIMATE.search(done.stdout)
    estimate = (float(found.group(1)) * (2 ** 20 if found.group(2) == "MiB" else 2 ** 30)
                if found else None)
    report = {"date": started, "machine": machine(), "command": command,
              "size": args.size, "memory": args.memory, "workers": args.workers,
              "wall_s": done.wall_s, "cpu_s": done.cpu_s, "main_cpu_s": done.root_cpu_s,
              "cores_busy": done.cpu_s / (args.workers * done.wall_s),
              "peak_pss": done.peak_pss, "estimate": estimate,
              "estimate_vs_peak": estimate / done.peak_pss if estimate else None,
              "load_before": done.load_before, "busy_before_cores": busy,
              "quiet_wait_s": waited, "foreign_cores": done.foreign_cores,
              "stdout": done.stdout[-4000:]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("stdout", "machine",
                                                                     "command")}, indent=2))
    print(done.stdout[-2500:])


if __name__ == "__main__":
    main()
