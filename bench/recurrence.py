"""Recurrence-plot throughput: jitted JAX vs pyts vs plain NumPy, on the same data.

    python bench/recurrence.py [--n 4096] [--t 61] [--repeats 5]

N pixels × 3 index series of length T → N × T × T × 3 unthresholded plots
(``|x_i − x_j|``, float32 for JAX/NumPy; pyts always computes float64). Each path is
timed after a warm-up call; the median of ``--repeats`` runs is reported as pixels/s.
Paths are timed in turn (round robin) so that noise on a shared machine hits all alike.
Two more rows: the whole on-device path of the training step, ``index_recurrence_plots``
(bands → indices → resampling to T steps → RPs), and the JAX plots consumed inside the
same jitted graph (summed), which is how the training step uses them: there the 183 MB
never has to be written to memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax import parallel
from pimc_jax.recurrence import index_recurrence_plots, recurrence_plot


def _interleaved_medians(paths: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per path, the paths timed in turn so machine noise hits all alike."""
    for fn in paths.values():
        fn()  # warm-up (compilation for JAX, numba JIT for pyts)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="number of pixels")
    parser.add_argument("--t", type=int, default=61, help="series length")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path")
    args = parser.parse_args()
    n, t, channels = args.n, args.t, 3

    rng = np.random.default_rng(0)
    series = rng.uniform(-1.0, 1.0, size=(n, t, channels)).astype(np.float32)
    device_series = jax.device_put(series)

    def jax_path() -> object:
        plots = recurrence_plot(device_series, channels_last=True)
        return plots.block_until_ready()

    bands = rng.uniform(0.02, 0.6, size=(n, t, 10)).astype(np.float32)
    dates = np.sort(rng.uniform(0, 365, size=(n, t)), axis=1).astype(np.float32)
    mask = rng.random((n, t)) < 0.8
    device_inputs = jax.device_put((bands, dates, mask))

    def pipeline_path() -> object:
        plots = index_recurrence_plots(*device_inputs, band_names="pastis", size=t)
        return plots.block_until_ready()

    def numpy_path() -> np.ndarray:
        return np.abs(series[:, :, None, :] - series[:, None, :, :])

    @jax.jit
    def consumed_in_graph(x: jax.Array) -> jax.Array:
        # As inside the training step: the plots feed a consumer and never reach memory.
        return jnp.sum(recurrence_plot(x, channels_last=True), axis=(1, 2))

    paths: dict[str, Callable[[], object]] = {
        "jax (jit, channels_last)": jax_path,
        "numpy broadcast": numpy_path,
    }
    try:
        from pyts.image import RecurrencePlot
    except ImportError:
        print("pyts not installed: skipping the pyts row")
    else:
        transformer = RecurrencePlot()
        per_channel = [np.ascontiguousarray(series[:, :, c]) for c in range(channels)]
        paths["pyts RecurrencePlot"] = lambda: [transformer.transform(x) for x in per_channel]
    paths["jax index_recurrence_plots"] = pipeline_path
    paths["jax, consumed in-graph"] = lambda: consumed_in_graph(device_series).block_until_ready()
    timings = _interleaved_medians(paths, args.repeats)

    output_mb = n * t * t * channels * 4 / 1e6
    print(
        f"N={n} pixels, T={t}, {channels} channels, output {output_mb:.0f} MB float32, "
        f"backend={jax.default_backend()}, median of {args.repeats}"
    )
    print(f"{'path':<28}{'ms':>10}{'pixels/s':>14}")
    for name, seconds in timings.items():
        print(f"{name:<28}{seconds * 1e3:>10.1f}{n / seconds:>14,.0f}")
    jax_seconds = timings["jax (jit, channels_last)"]
    if "pyts RecurrencePlot" in timings:
        print(f"speed-up JAX/pyts:  {timings['pyts RecurrencePlot'] / jax_seconds:.2f}x")
    print(f"speed-up JAX/NumPy: {timings['numpy broadcast'] / jax_seconds:.2f}x")
    if "pyts RecurrencePlot" in timings:
        in_graph = timings["jax, consumed in-graph"]
        print(f"speed-up JAX in-graph/pyts: {timings['pyts RecurrencePlot'] / in_graph:.2f}x")


if __name__ == "__main__":
    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
