"""Run every benchmark: ``python -m benchmarks`` (or ``make bench``)."""

from benchmarks import bench_balancing, bench_captions, bench_planning

if __name__ == "__main__":
    bench_planning.main()
    bench_captions.main()
    bench_balancing.main()
